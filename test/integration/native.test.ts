/**
 * The native I/O layer in network namespaces (run as root): TUN queues and raw IP-in-IP sockets,
 * batched, from the main thread, worker threads and piscina.
 *
 * Lab: namespace A (host 198.18.0.28, TUN devices, overlay 250.0.0.0/8 routed into them) joined
 * by a veth to namespace B (host 198.18.0.27). The test opens its descriptors inside A or B with
 * setns on its own thread (inNetns), so everything runs in this process.
 */
import { readdirSync, readFileSync, readlinkSync, fstatSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PacketBatch, type PacketList } from '../../src/io/batch.js';
import { link } from '../../src/io/link.js';
import { native, isNativeError } from '../../src/io/native.js';
import { inNetns } from '../../src/io/netns.js';
import { Poller, Waker } from '../../src/io/poll.js';
import { IPPROTO_RAW, RawIpipSocket } from '../../src/underlay/raw-socket.js';
import { shareFilter, shareOf } from '../../src/underlay/share.js';
import { TunQueue } from '../../src/tun/queue.js';
import { Lab } from '../../src/lab/netns.js';
import { threads } from '../helpers/proc.js';
import { poll, waitFor, waitForValue } from '../helpers/wait.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/native-worker.mjs', import.meta.url));
const ADDON = fileURLToPath(new URL('../../build/Release/userfan.node', import.meta.url));

/** Polls cond every 2 ms until it holds or timeoutMs passes (a deadline); returns whether it held. */
const until = (cond: () => boolean, timeoutMs = 2000): Promise<boolean> => poll(cond, { timeoutMs, intervalMs: 2 });

// ---------- packets ----------

const addr = (s: string): number => s.split('.').reduce((a, o) => ((a << 8) | Number(o)) >>> 0, 0);
const A_UNDER = addr('198.18.0.28');
const B_UNDER = addr('198.18.0.27');

function checksum(b: Uint8Array, start: number, end: number, seed = 0): number {
  let sum = seed;
  for (let i = start; i < end; i += 2) sum += (b[i] << 8) | (i + 1 < end ? b[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function put32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24; b[at + 1] = (v >>> 16) & 255; b[at + 2] = (v >>> 8) & 255; b[at + 3] = v & 255;
}
function put16(b: Uint8Array, at: number, v: number): void {
  b[at] = (v >>> 8) & 255; b[at + 1] = v & 255;
}
const get32 = (b: Uint8Array, at: number): number => ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
const get16 = (b: Uint8Array, at: number): number => (b[at] << 8) | b[at + 1];

/** Writes a 20-byte IPv4 header at b[at] with a correct checksum. */
function ipHeader(b: Uint8Array, at: number, h: { len: number; id: number; proto: number; src: number; dst: number; ttl?: number }): void {
  b.fill(0, at, at + 20);
  b[at] = 0x45;
  put16(b, at + 2, h.len);
  put16(b, at + 4, h.id);
  put16(b, at + 6, 0x4000); // DF
  b[at + 8] = h.ttl ?? 64;
  b[at + 9] = h.proto;
  put32(b, at + 12, h.src);
  put32(b, at + 16, h.dst);
  put16(b, at + 10, checksum(b, at, at + 20));
}

/** An IPv4/UDP packet: payload = 4-byte seq then pseudo-random filler, total `size` bytes (≥ 32). */
function udpPacket(src: number, dst: number, sport: number, dport: number, seq: number, size: number): Uint8Array {
  const p = new Uint8Array(size);
  ipHeader(p, 0, { len: size, id: (seq * 7 + 1) & 0xffff, proto: 17, src, dst });
  put16(p, 20, sport);
  put16(p, 22, dport);
  put16(p, 24, size - 20);
  put32(p, 28, seq);
  let x = seq * 2654435761 + 1;
  for (let i = 32; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    p[i] = x >>> 24;
  }
  // UDP checksum over the pseudo-header
  const pseudo = ((src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + 17 + (size - 20));
  put16(p, 26, checksum(p, 20, size, pseudo) || 0xffff);
  return p;
}

/** inner wrapped in an outer IPv4 header (protocol 4). */
function ipip(outerSrc: number, outerDst: number, inner: Uint8Array, id: number): Uint8Array {
  const p = new Uint8Array(20 + inner.length);
  ipHeader(p, 0, { len: p.length, id, proto: 4, src: outerSrc, dst: outerDst });
  p.set(inner, 20);
  return p;
}

/** Copies packets into the batch's slots and lists them in batch.outgoing with destination dst. */
function stage(batch: PacketBatch, packets: Uint8Array[], dst: number): PacketList {
  const out = batch.outgoing;
  out.clear();
  packets.forEach((p, i) => {
    const at = batch.packetStart(i);
    batch.bytes.set(p, at);
    out.push(at, p.length, dst);
  });
  return out;
}

/** Sends all packets (in batch-sized chunks). */
function sendAll(sock: RawIpipSocket, batch: PacketBatch, packets: Uint8Array[], dst: number): void {
  for (let i = 0; i < packets.length; i += batch.slots) {
    const list = stage(batch, packets.slice(i, i + batch.slots), dst);
    expect(sock.send(list)).toBe(list.count);
  }
}

// ---------- lab ----------

let lab: Lab | undefined;
let A = '';
let B = '';

/** `ip ARGS` in namespace ns. */
const ip = async (ns: string, ...args: string[]): Promise<void> => {
  await lab!.exec(ns, ['ip', ...args]);
};

describe('native I/O in network namespaces', () => {
  beforeAll(async () => {
    // Root only, like every namespace test: not root is a failure with its reason, never a skip.
    if (process.getuid?.() !== 0) throw new Error('native I/O tests build network namespaces: run them as root');
    lab = await Lab.create();
    A = await lab.addNamespace('a');
    B = await lab.addNamespace('b');
    const dev = lab.ifName('u0');
    await lab.addVeth({ ns: A, name: dev }, { ns: B, name: dev });
    await ip(A, 'addr', 'add', '198.18.0.28/24', 'dev', dev);
    await ip(B, 'addr', 'add', '198.18.0.27/24', 'dev', dev);
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  /** A TUN device in A, up, MTU 1480, with 250.0.0.0/8 routed into it. */
  async function tunInA(name: string, queues = 1): Promise<TunQueue[]> {
    const qs = inNetns(A, () => {
      const list = [TunQueue.open(name, { multiQueue: queues > 1 })];
      for (let i = 1; i < queues; i++) list.push(TunQueue.open(name, { multiQueue: true }));
      link.setMtu(name, 1480);
      link.setUp(name);
      return list;
    });
    await ip(A, 'route', 'replace', '250.0.0.0/8', 'dev', name);
    return qs;
  }

  /** Reads from the queues until `want` IPv4 packets arrived (or 3 s); returns them per queue. */
  async function readUntil(queues: TunQueue[], batch: PacketBatch, want: number): Promise<Uint8Array[][]> {
    const got: Uint8Array[][] = queues.map(() => []);
    const poller = new Poller();
    queues.forEach((q) => poller.add(q.fd));
    let total = 0;
    await until(() => {
      if (poller.wait(0) > 0) {
        queues.forEach((q, qi) => {
          const n = q.read(batch);
          for (let i = 0; i < n; i++) {
            const p = batch.received.packet(i);
            if (p[0] >> 4 === 4) {
              got[qi].push(p.slice());
              total++;
            }
          }
        });
      }
      return total >= want;
    }, 3000);
    return got;
  }

  it('delivers packets the kernel routes into the TUN intact into the slots', async () => {
    const [tun] = await tunInA('fan0');
    const tx = inNetns(A, () => RawIpipSocket.open({ protocol: IPPROTO_RAW }));
    const batch = new PacketBatch({ slots: 64 });
    try {
      const dst = addr('250.0.27.3');
      const sent = Array.from({ length: 60 }, (_, i) =>
        udpPacket(addr('250.0.28.3'), dst, 40000 + i, 5000, i, 32 + Math.floor((i * 1448) / 59)));
      expect(sent.at(-1)!.length).toBe(1480);
      sendAll(tx, batch, sent, dst);
      expect(tx.errors.total).toBe(0);

      const [got] = await readUntil([tun], batch, sent.length);
      expect(got.length).toBe(sent.length);
      for (const p of got) {
        const seq = get32(p, 28);
        expect(Buffer.from(p).equals(Buffer.from(sent[seq]))).toBe(true);
      }

      // A datagram from a plain UDP socket of another process, built by the kernel.
      execFileSync('ip', ['netns', 'exec', A, process.execPath, '-e',
        `const s=require('dgram').createSocket('udp4');s.send(Buffer.from('hello-fan'),9999,'250.0.27.3',()=>s.close())`],
      { timeout: 10_000 });
      const [[udp]] = await readUntil([tun], batch, 1);
      expect(udp[9]).toBe(17);
      expect(get32(udp, 16)).toBe(dst);
      expect(get16(udp, 22)).toBe(9999);
      expect(Buffer.from(udp.subarray(28)).toString()).toBe('hello-fan');
      expect(checksum(udp, 0, 20)).toBe(0);
    } finally {
      tx.close();
      tun.close();
    }
  });

  it('flags packets longer than their slot as truncated (TUN cuts them, raw sockets report the length)', async () => {
    const [tun] = await tunInA('fan6');
    inNetns(A, () => link.setMtu('fan6', 3000));
    const tx = inNetns(A, () => RawIpipSocket.open({ protocol: IPPROTO_RAW }));
    const ipipTx = inNetns(A, () => RawIpipSocket.open());
    const rx = inNetns(B, () => RawIpipSocket.open());
    const big = new PacketBatch({ slots: 4 });
    const small = new PacketBatch({ slots: 4, slotSize: 1024 });
    try {
      const dst = addr('250.0.27.3');
      for (const size of [1400, 900]) {
        stage(big, [udpPacket(addr('250.0.28.3'), dst, 1, 2, 0, size)], dst);
        expect(tx.send(big.outgoing)).toBe(1);
        let n = 0;
        await until(() => (n = tun.read(small)) > 0);
        expect(n).toBe(1);
        expect(small.received.lengths[0]).toBe(Math.min(size, small.packetCapacity));
        expect(small.truncated(0)).toBe(size > small.packetCapacity);
      }

      stage(big, [ipip(A_UNDER, B_UNDER, udpPacket(addr('250.0.28.3'), dst, 1, 2, 2, 1400), 9)], B_UNDER);
      expect(ipipTx.send(big.outgoing)).toBe(1);
      let got = 0;
      await until(() => (got += rx.receive(small)) > 0);
      expect(got).toBe(1);
      expect(small.received.lengths[0]).toBe(1420);
      expect(small.truncated(0)).toBe(true);
    } finally {
      tx.close();
      ipipTx.close();
      rx.close();
      tun.close();
    }
  });

  it('sends a packet from a slot that arrives byte-exact in the peer namespace, and counts refusals', async () => {
    const tx = inNetns(A, () => RawIpipSocket.open());
    const rx = inNetns(B, () => RawIpipSocket.open());
    const batch = new PacketBatch({ slots: 32 });
    const rbatch = new PacketBatch({ slots: 32 });
    try {
      // Encapsulate in place: inner packet at the slot start, outer header in the headroom.
      const inners = Array.from({ length: 20 }, (_, i) =>
        udpPacket(addr('250.0.28.3'), addr('250.0.27.3'), 1000 + i, 7, i, 100 + i * 60));
      const out = batch.outgoing;
      out.clear();
      inners.forEach((inner, i) => {
        const at = batch.packetStart(i);
        batch.bytes.set(inner, at);
        ipHeader(batch.bytes, at - 20, { len: inner.length + 20, id: 100 + i, proto: 4, src: A_UNDER, dst: B_UNDER });
        out.push(at - 20, inner.length + 20, B_UNDER);
      });
      expect(tx.send(out)).toBe(inners.length);
      expect(tx.errors.total).toBe(0);

      const got: Uint8Array[] = [];
      const poller = new Poller();
      poller.add(rx.fd);
      await until(() => {
        if (poller.wait(0) > 0) {
          const n = rx.receive(rbatch);
          for (let i = 0; i < n; i++) {
            expect(rbatch.received.addresses[i]).toBe(A_UNDER);
            got.push(rbatch.received.packet(i).slice());
          }
        }
        return got.length >= inners.length;
      });
      expect(got.length).toBe(inners.length);
      got.forEach((p, i) => {
        expect(Buffer.from(p).equals(Buffer.from(ipip(A_UNDER, B_UNDER, inners[i], 100 + i)))).toBe(true);
      });

      // Refused packets are counted, not thrown, and the rest of the batch still goes out.
      const big = ipip(A_UNDER, B_UNDER, udpPacket(addr('250.0.28.3'), addr('250.0.27.3'), 1, 7, 999, 1481), 1);
      const nowhere = addr('198.18.200.1'); // inside the lab range, but A has no route to it
      const fine = ipip(A_UNDER, B_UNDER, inners[0], 7);
      stage(batch, [big, fine, ipip(A_UNDER, nowhere, inners[1], 8), fine], B_UNDER);
      out.addresses[2] = nowhere;
      expect(tx.send(out)).toBe(4);
      expect(tx.errors.snapshot()).toMatchObject({ total: 2, messageTooBig: 1, unreachable: 1, last: 'ENETUNREACH' });
      let n = 0;
      await until(() => (n += rx.receive(rbatch)) >= 2);
      expect(n).toBe(2);
    } finally {
      tx.close();
      rx.close();
    }
  });

  it('spreads several flows over both queues of a multi-queue TUN, each packet once', async () => {
    const queues = await tunInA('fan1', 2);
    const tx = inNetns(A, () => RawIpipSocket.open({ protocol: IPPROTO_RAW }));
    const batch = new PacketBatch({ slots: 128 });
    try {
      const dst = addr('250.0.27.3');
      const sent = Array.from({ length: 256 }, (_, i) =>
        udpPacket(addr('250.0.28.3'), dst, 20000 + (i % 32), 5201, i, 200));
      sendAll(tx, batch, sent, dst);
      const got = await readUntil(queues, batch, sent.length);
      const seqs = got.flat().map((p) => get32(p, 28)).sort((a, b) => a - b);
      expect(seqs).toEqual(sent.map((_, i) => i));
      expect(got[0].length).toBeGreaterThan(0);
      expect(got[1].length).toBeGreaterThan(0);
      // A flow stays on one queue.
      const queueOf = new Map<number, number>();
      got.forEach((ps, qi) => ps.forEach((p) => {
        const sport = get16(p, 20);
        expect(queueOf.get(sport) ?? qi).toBe(qi);
        queueOf.set(sport, qi);
      }));
    } finally {
      tx.close();
      queues.forEach((q) => q.close());
    }
  });

  /** IP-in-IP packets A → B: inner UDP from 250.0.28.x to 250.0.27.x, many flows, seq at byte 48. */
  function ipipFlows(count: number, size = 120, variants = false): Uint8Array[] {
    return Array.from({ length: count }, (_, i) => {
      let inner = udpPacket(addr(`250.0.28.${2 + (i % 7)}`), addr(`250.0.27.${2 + (i % 5)}`), 30000 + (i % 101), 5201, i, size);
      if (variants) inner = variant(inner, i % 10);
      return ipip(A_UNDER, B_UNDER, inner, i + 1);
    });
  }

  /** What the share hash must cope with: TCP, ICMP, fragments, inner IP options (v = 1..5). */
  function variant(p: Uint8Array, v: number): Uint8Array {
    if (v === 1) p[9] = 6;
    else if (v === 2) p[9] = 1;
    else if (v === 3) put16(p, 6, 0x2000); // MF: first fragment
    else if (v === 4) put16(p, 6, 0x0010); // a later fragment: no ports in it
    else if (v === 5) {
      const q = new Uint8Array(p.length + 4);
      q.set(p.subarray(0, 20));
      q.fill(1, 20, 24); // four NOP options
      q.set(p.subarray(20), 24);
      q[0] = 0x46;
      put16(q, 2, q.length);
      return q;
    }
    return p;
  }

  it('N sockets with shares receive every packet exactly once (and without shares, every socket gets everything)', async () => {
    const tx = inNetns(A, () => RawIpipSocket.open());
    const N = 3;
    const rxs = inNetns(B, () => Array.from({ length: N }, () => RawIpipSocket.open()));
    const batch = new PacketBatch({ slots: 128 });
    const rbatch = new PacketBatch({ slots: 128 });
    try {
      // Without a filter every protocol-4 socket receives every packet.
      sendAll(tx, batch, ipipFlows(10), B_UNDER);
      let copies = 0;
      await until(() => (copies += rxs.reduce((s, r) => s + r.receive(rbatch), 0)) >= 10 * N);
      expect(copies).toBe(10 * N);

      rxs.forEach((r, i) => r.share(i, N));
      const packets = ipipFlows(3000, 120, true);
      const seen = new Uint16Array(packets.length);
      const perSocket = new Array<number>(N).fill(0);
      const poller = new Poller();
      rxs.forEach((r) => poller.add(r.fd));
      let total = 0;
      const drainAll = (): void => {
        if (poller.wait(0) === 0) return;
        rxs.forEach((r, si) => {
          const n = r.receive(rbatch);
          for (let i = 0; i < n; i++) {
            const p = rbatch.received.packet(i);
            seen[get16(p, 4) - 1]++; // the outer ID: the packet's index + 1
            expect(shareOf(rbatch.bytes, rbatch.received.offsets[i], rbatch.received.lengths[i], N)).toBe(si);
          }
          perSocket[si] += n;
          total += n;
        });
      };
      for (let i = 0; i < packets.length; i += 100) {
        sendAll(tx, batch, packets.slice(i, i + 100), B_UNDER);
        await until(() => (drainAll(), total >= Math.min(i + 100, packets.length)));
      }
      expect(total).toBe(packets.length);
      expect(Array.from(seen).every((c) => c === 1)).toBe(true);
      for (const c of perSocket) expect(c).toBeGreaterThan(packets.length / N / 2);
    } finally {
      tx.close();
      rxs.forEach((r) => r.close());
    }
  });

  it('4 worker threads with shares receive at once, each packet exactly once, and close their sockets', async () => {
    const N = 4;
    const stop = new SharedArrayBuffer(4);
    const packets = ipipFlows(4000, 100);
    const seen = new SharedArrayBuffer(packets.length * 4);
    const workers: Worker[] = [];
    const ready: Promise<{ inode: string }>[] = [];
    const done: Promise<{ received: number; threadId: number }>[] = [];
    const exited: Promise<number>[] = [];
    const tx = inNetns(A, () => RawIpipSocket.open());
    const batch = new PacketBatch({ slots: 100 });
    try {
      for (let i = 0; i < N; i++) {
        const w = new Worker(FIXTURE, {
          workerData: { mode: 'receive', netns: B, index: i, count: N, program: shareFilter(i, N), stop, seen, seqAt: 48, timeoutMs: 20_000 },
        });
        workers.push(w);
        const msgs: { ready?: boolean; done?: boolean }[] = [];
        const next = (key: 'ready' | 'done') => new Promise<any>((resolve, reject) => {
          const look = () => {
            const m = msgs.find((x) => x[key]);
            if (m) resolve(m);
          };
          w.on('message', (m) => { msgs.push(m); look(); });
          w.on('error', reject);
          // A worker's messages arrive before its exit: look at them first.
          w.on('exit', (code) => {
            look();
            reject(new Error(`worker exited (${code}) before ${key}`));
          });
        });
        ready.push(next('ready'));
        done.push(next('done'));
        exited.push(new Promise((resolve) => w.on('exit', resolve)));
      }
      const inodes = (await Promise.all(ready)).map((r) => r.inode);
      const counts = new Int32Array(seen);
      const received = (): number => counts.reduce((s, c) => s + c, 0);
      for (let i = 0; i < packets.length; i += 100) {
        sendAll(tx, batch, packets.slice(i, i + 100), B_UNDER);
        if (i % 1000 === 900) await until(() => received() >= i + 100, 5000);
      }
      await until(() => received() >= packets.length, 5000);
      Atomics.store(new Int32Array(stop), 0, 1);
      const results = await Promise.all(done);
      expect(await Promise.all(exited)).toEqual([0, 0, 0, 0]);

      expect(received()).toBe(packets.length);
      expect(Array.from(counts).every((c) => c === 1)).toBe(true);
      expect(new Set(results.map((r) => r.threadId)).size).toBe(N);
      for (const r of results) expect(r.received).toBeGreaterThan(packets.length / N / 2);
      // Their sockets are closed: no descriptor of this process refers to them any more.
      const open = new Set<string>();
      for (const fd of readdirSync('/proc/self/fd')) {
        try {
          open.add(readlinkSync(`/proc/self/fd/${fd}`));
        } catch { /* closed meanwhile */ }
      }
      for (const inode of inodes) expect(open.has(`socket:[${inode}]`)).toBe(false);
    } finally {
      Atomics.store(new Int32Array(stop), 0, 1);
      tx.close();
      await Promise.all(workers.map((w) => w.terminate()));
    }
  });

  it('closing queues removes a non-persistent device with its last queue; a persistent one stays until removed', async () => {
    const [q0, q1] = await tunInA('fan2', 2);
    const exists = (name: string): boolean => inNetns(A, () => link.exists(name));
    expect(exists('fan2')).toBe(true);
    const fd0 = q0.fd;
    q0.close();
    expect(q0.closed).toBe(true);
    expect(() => fstatSync(fd0)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    q0.close(); // idempotent
    expect(exists('fan2')).toBe(true);
    q1.close();
    expect(await until(() => !exists('fan2'))).toBe(true);

    const p = inNetns(A, () => TunQueue.open('fan3', { persist: true }));
    p.close();
    expect(exists('fan3')).toBe(true);
    inNetns(A, () => TunQueue.remove('fan3'));
    expect(await until(() => !exists('fan3'))).toBe(true);
  });

  it('reports a deleted TUN device: POLLERR in wait, EBADFD from read, named after the device', async () => {
    const [q] = await tunInA('fan4');
    const batch = new PacketBatch({ slots: 8 });
    try {
      // A packet that is not IP: the kernel refuses it, the batch counts it.
      const list = stage(batch, [new Uint8Array(40).fill(0x11)], 0);
      expect(q.write(list)).toBe(1);
      expect(q.errors.total).toBe(1);
      expect(q.errors.last).toBe('EINVAL');
      // A valid packet while the device is down: EIO, counted.
      inNetns(A, () => link.setUp('fan4', false));
      stage(batch, [udpPacket(addr('250.0.27.3'), addr('250.0.28.3'), 1, 2, 0, 100)], 0);
      expect(q.write(batch.outgoing)).toBe(1);
      expect(q.errors.snapshot()).toMatchObject({ total: 2, deviceDown: 1, invalid: 1, last: 'EIO' });

      await ip(A, 'link', 'del', 'fan4');
      const poller = new Poller();
      poller.add(q.fd);
      expect(await until(() => poller.wait(0) > 0 && poller.failed(0))).toBe(true);
      let err: unknown;
      try {
        q.read(batch);
      } catch (e) {
        err = e;
      }
      expect(isNativeError(err)).toBe(true);
      expect(err).toMatchObject({ code: 'EBADFD', syscall: 'read', message: 'read fan4: EBADFD' });
    } finally {
      q.close();
    }
  });

  it('opens a TUN with a virtio-net header and switches offloads on and off', async () => {
    const q = inNetns(A, () => {
      const t = TunQueue.open('fan7', { vnetHdr: true });
      link.setMtu('fan7', 1480);
      link.setUp('fan7');
      return t;
    });
    await ip(A, 'route', 'replace', '250.0.0.0/8', 'dev', 'fan7');
    const tx = inNetns(A, () => RawIpipSocket.open({ protocol: IPPROTO_RAW }));
    const batch = new PacketBatch({ slots: 4 });
    try {
      const n = native();
      q.setOffload(n.TUN_F_CSUM | n.TUN_F_TSO4 | n.TUN_F_TSO6);
      q.setOffload(0);
      const dst = addr('250.0.27.3');
      const p = udpPacket(addr('250.0.28.3'), dst, 1, 2, 5, 300);
      stage(batch, [p], dst);
      expect(tx.send(batch.outgoing)).toBe(1);
      let got = 0;
      await until(() => (got = q.read(batch)) > 0);
      expect(got).toBe(1);
      // 10-byte virtio_net_hdr (no offload asked for this packet: all zero), then the packet.
      const r = batch.received.packet(0);
      expect(r.length).toBe(10 + p.length);
      expect(Array.from(r.subarray(0, 10))).toEqual(new Array(10).fill(0));
      expect(Buffer.from(r.subarray(10)).equals(Buffer.from(p))).toBe(true);
      // Offloads need the virtio-net header.
      const plain = inNetns(A, () => TunQueue.open('fan8'));
      try {
        expect(() => plain.setOffload(n.TUN_F_TSO4)).toThrow(/^TUNSETOFFLOAD fan8: EINVAL$/);
      } finally {
        plain.close();
      }
    } finally {
      tx.close();
      q.close();
    }
  });

  it('throws errors naming the operation, the object and the errno', async () => {
    expect(() => native().close(1_000_000_000)).toThrow(
      expect.objectContaining({ message: 'close fd 1000000000: EBADF', code: 'EBADF', errno: 9 }),
    );
    // Attaching a second queue to a single-queue device.
    const [q] = await tunInA('fan5');
    try {
      expect(() => inNetns(A, () => TunQueue.open('fan5'))).toThrow(
        expect.objectContaining({ message: 'TUNSETIFF fan5: EBUSY', code: 'EBUSY' }),
      );
      expect(() => inNetns(A, () => link.setMtu('nosuch0', 1400))).toThrow(
        expect.objectContaining({ message: 'SIOCSIFMTU nosuch0: ENODEV' }),
      );
      expect(() => TunQueue.open('a-name-longer-than-15')).toThrow(RangeError);
    } finally {
      q.close();
    }
  });

  /** This thread's voluntary context switches so far: it slept in the kernel once for each. */
  const sleptSoFar = (): number => Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync('/proc/thread-self/status', 'utf8'))?.[1]);

  /** The monotonic clock in µs, as poller.times reports it (process.hrtime reads CLOCK_MONOTONIC too). */
  const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

  /**
   * A worker thread that calls wait(timeoutMs) on one descriptor again and again until it is ready, then
   * reports what the last call returned. While it waits, /proc shows the poll() it is blocked in.
   */
  function waitInThread(fd: number, timeoutMs: number) {
    const code = `const { workerData: d, parentPort } = require('node:worker_threads');
      const addon = require(d.addon);
      const fds = Int32Array.of(d.fd), rev = new Int32Array(1);
      let r;
      while ((r = addon.wait(fds, null, 1, d.timeoutMs, rev)) === 0);
      parentPort.postMessage({ r, revents: rev[0] });`;
    const w = new Worker(code, { eval: true, workerData: { addon: ADDON, fd, timeoutMs } });
    let result: { r: number; revents: number } | undefined;
    let failure: Error | undefined;
    w.on('message', (m) => (result = m));
    w.on('error', (e) => (failure = e));
    return {
      /** The timeout (ms) the thread's poll() asked the kernel for, read from /proc/PID/task/TID/syscall. */
      async blockedWith(): Promise<number> {
        if (process.arch !== 'x64') throw new Error(`this test reads x86_64 system call numbers; this is ${process.arch}`);
        // poll(fds, nfds = 1, timeout): x86_64 system call 7; nothing else in this process polls one descriptor.
        const inPoll = () => threads(process.pid).filter((t) => t.syscall[0] === 7 && t.syscall[2] === 1).map((t) => t.syscall[3]);
        const [timeout] = await waitForValue('the thread to block in poll()', inPoll, (l) => l.length === 1);
        return timeout;
      },
      async result(): Promise<{ r: number; revents: number }> {
        await waitFor('the waiting thread to report', () => result !== undefined || failure !== undefined);
        if (failure) throw failure;
        await w.terminate();
        return result!;
      },
    };
  }

  it('waits with a bounded timeout, and a Waker ends a wait at once', async () => {
    const waker = new Waker();
    try {
      const poller = new Poller();
      const w = poller.add(waker.fd);
      // Nothing ready: the thread sleeps in the kernel (a voluntary context switch) and comes back with 0.
      const slept = sleptSoFar();
      expect(poller.wait(30)).toBe(0);
      expect(sleptSoFar()).toBeGreaterThan(slept);
      expect(poller.readable(w)).toBe(false);
      // The kernel is asked for the timeout given; a longer (or negative, i.e. forever) one is capped at
      // WAIT_MAX_MS: a thread always comes back. A wake from another thread ends the wait it is blocked in.
      for (const [asked, kernel] of [[30, 30], [5000, native().WAIT_MAX_MS], [-1, native().WAIT_MAX_MS]]) {
        const t = waitInThread(waker.fd, asked);
        expect(await t.blockedWith(), `wait(${asked})`).toBe(kernel);
        waker.wake();
        expect(await t.result()).toMatchObject({ r: 1 });
        expect(waker.clear()).toBe(1);
      }
      // Woken before the call: the first look finds it.
      waker.wake();
      expect(poller.wait(5000)).toBe(1);
      expect(poller.readable(w)).toBe(true);
      expect(waker.clear()).toBe(1);
      expect(poller.wait(0)).toBe(0);
    } finally {
      waker.close();
    }
  });

  it('busy-polls when asked: a look that finds a descriptor ready says so; with nothing ready it returns 0 after the spin and the timeout; says when it ran', () => {
    const waker = new Waker();
    try {
      const poller = new Poller();
      const w = poller.add(waker.fd);
      // Ready before the call: the first look finds it, no sleep.
      waker.wake();
      expect(poller.wait(5000, 30_000)).toBe(1);
      expect(poller.readable(w)).toBe(true);
      expect(poller.caught()).toBe(true);
      waker.clear();
      // Nothing comes: it looks for at most 30 ms (less when another thread wants this CPU), then does not
      // sleep (timeout 0).
      expect(poller.wait(0, 30_000)).toBe(0);
      expect(poller.caught()).toBe(false);
      // times: when the call started and ended, µs on the monotonic clock: inside the call, in order.
      const before = monotonicUs();
      expect(poller.wait(20)).toBe(0);
      const after = monotonicUs();
      const [start, end] = poller.times;
      expect(before <= start && start <= end && end <= after, `${before} ≤ ${start} ≤ ${end} ≤ ${after}`).toBe(true);
      // A plain wait never says it caught anything.
      waker.wake();
      expect(poller.wait(0)).toBe(1);
      expect(poller.caught()).toBe(false);
      waker.clear();
      expect(() => poller.wait(0, native().WAIT_MAX_SPIN_US + 1)).toThrow(/spinUs/);
    } finally {
      waker.close();
    }
  });

  it('loads in a piscina worker', async () => {
    const pool = new Piscina({ filename: new URL('../fixtures/native-worker.mjs', import.meta.url).href, minThreads: 2, maxThreads: 2 });
    try {
      const results = await Promise.all([1, 2, 3, 4].map((i) => pool.run(i)));
      for (const [i, r] of results.entries()) {
        expect(r).toMatchObject({ input: i + 1, ready: 1, count: 1, error: { code: 'EBADF', message: 'close fd 1000000000: EBADF' } });
        expect(r.revents & r.pollin).toBeTruthy();
        expect(r.threadId).toBeGreaterThan(0);
      }
    } finally {
      await pool.destroy();
    }
  });
});
