/**
 * The worker loop in TypeScript, through src/io and src/wire, beside its C yardstick bench/loop.c
 * (same syscalls, batch size and checks). Run by bench/native-bench.ts inside the bench lab:
 *
 *   node dist/bench/native-loop.js encap TUN SECONDS [BATCH]
 *       TUN read until EAGAIN/BATCH → egressRoute + encapsulate in the headroom → sendmmsg
 *   node dist/bench/native-loop.js decap TUN SECONDS [BATCH]
 *       recvmmsg → decapsulate → TUN write
 *   node dist/bench/native-loop.js send PROTOCOL SECONDS [BATCH]
 *       sendmmsg of ready IP-in-IP packets (198.18.0.28 → .99) as fast as possible on a raw
 *       socket of PROTOCOL (4: IPPROTO_IPIP, 255: IPPROTO_RAW), to compare the two
 *   node dist/bench/native-loop.js receive SOCKETS SECONDS [BATCH]
 *       SOCKETS protocol-4 sockets with shares i/SOCKETS (1: no filter), drained by this one thread
 *
 * Fan: 250.0.0.0/8 over 198.18.0.0/16, this host 198.18.0.28. Prints one JSON line like loop.c.
 * Every mode first runs WARMUP seconds (environment, default 1: the JIT settles) unmeasured.
 */
import { Fan } from '../src/fan/fan.js';
import { FanTable } from '../src/fan/table.js';
import { PacketBatch } from '../src/io/batch.js';
import { Poller } from '../src/io/poll.js';
import { RawIpipSocket } from '../src/underlay/raw-socket.js';
import { TunQueue } from '../src/tun/queue.js';
import { decapsulate, egressRoute, encapsulate, OUTER_HEADER_LEN, ROUTE_DST, ROUTE_SRC } from '../src/wire/ipip.js';

const LOCAL = 0xc612001c; // 198.18.0.28
/** 198.18.0.99: a stranger with a static neighbour entry, so sent packets die cheaply at B's veth. */
const STRANGER = 0xc6120063;
const WAIT_MS = 20;
const WARMUP_MS = Number(process.env.WARMUP ?? 1) * 1000;

const cpuSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const userSeconds = (): number => process.cpuUsage().user / 1e6;

/** Time and CPU baselines, reset once when the warm-up ends. */
class Clock {
  t0 = performance.now();
  cpu0 = cpuSeconds();
  user0 = userSeconds();
  end: number;
  readonly #warmupMs: number;
  #warming: boolean;
  constructor(seconds: number, warmupMs = WARMUP_MS) {
    this.#warmupMs = warmupMs;
    this.#warming = warmupMs > 0;
    this.end = this.t0 + warmupMs + seconds * 1000;
  }
  /** True while the run lasts; calls reset() once when the warm-up is over. */
  running(reset: () => void): boolean {
    const t = performance.now();
    if (this.#warming && t >= this.t0 + this.#warmupMs) {
      this.#warming = false;
      reset();
      this.t0 = t;
      this.cpu0 = cpuSeconds();
      this.user0 = userSeconds();
    }
    return t < this.end;
  }
  result(): { seconds: number; cpuSeconds: number; userSeconds: number } {
    return { seconds: (performance.now() - this.t0) / 1000, cpuSeconds: cpuSeconds() - this.cpu0, userSeconds: userSeconds() - this.user0 };
  }
}

interface Result {
  impl: 'ts';
  mode: string;
  packets: number;
  drops: number;
  sendErrors: number;
  seconds: number;
  cpuSeconds: number;
  [k: string]: unknown;
}

function fanTable(): FanTable {
  return new FanTable([new Fan({ net: 0xfa000000, len: 8 }, { net: 0xc6120000, len: 16 }, LOCAL)]);
}


function encapLoop(tunName: string, seconds: number, batchSize: number): Result {
  const fans = fanTable();
  const tun = TunQueue.open(tunName, { multiQueue: true });
  const sock = RawIpipSocket.open({ rcvbuf: 8 << 20, sndbuf: 8 << 20 });
  const batch = new PacketBatch({ slots: batchSize });
  const poller = new Poller(1);
  poller.add(tun.fd);
  const bytes = batch.bytes;
  const rx = batch.received;
  const tx = batch.outgoing;
  let packets = 0, drops = 0, unsent = 0, id = 0, batches = 0, polls = 0;
  const route = new Int32Array(2);
  const clock = new Clock(seconds);
  const reset = (): void => {
    packets = drops = unsent = batches = polls = 0;
    sock.errors.reset();
  };
  while (clock.running(reset)) {
    polls++;
    if (poller.wait(WAIT_MS) === 0) continue;
    const n = tun.read(batch);
    if (n > 0) batches++;
    tx.count = 0;
    for (let i = 0; i < n; i++) {
      const off = rx.offsets[i];
      const len = rx.lengths[i];
      if (len > batch.packetCapacity) { drops++; continue; }
      if (egressRoute(bytes, off, len, fans, route) !== 0) { drops++; continue; }
      const dst = route[ROUTE_DST];
      const o = encapsulate(bytes, off, len, route[ROUTE_SRC], dst, 64, id);
      id = (id + 1) & 0xffff;
      tx.push(o, len + OUTER_HEADER_LEN, dst);
    }
    const next = sock.send(tx);
    unsent += tx.count - next;
    packets += next;
  }
  const times = clock.result();
  tun.close();
  sock.close();
  const errors = sock.errors.total;
  return { impl: 'ts', mode: 'encap', packets: packets - errors, drops, sendErrors: errors + unsent, batches, polls, ...times };
}

function decapLoop(tunName: string, seconds: number, batchSize: number): Result {
  const fans = fanTable();
  const tun = TunQueue.open(tunName, { multiQueue: true });
  const sock = RawIpipSocket.open({ rcvbuf: 8 << 20, sndbuf: 8 << 20 });
  const batch = new PacketBatch({ slots: batchSize });
  const poller = new Poller(1);
  poller.add(sock.fd);
  const bytes = batch.bytes;
  const rx = batch.received;
  const tx = batch.outgoing;
  let packets = 0, drops = 0, batches = 0, polls = 0;
  const clock = new Clock(seconds);
  const reset = (): void => {
    packets = drops = batches = polls = 0;
    tun.errors.reset();
  };
  while (clock.running(reset)) {
    polls++;
    if (poller.wait(WAIT_MS) === 0) continue;
    const n = sock.receive(batch);
    if (n > 0) batches++;
    tx.count = 0;
    for (let i = 0; i < n; i++) {
      const off = rx.offsets[i];
      const len = rx.lengths[i];
      if (len > batch.packetCapacity) { drops++; continue; }
      const inner = decapsulate(bytes, off, len, fans);
      if (inner < 0) { drops++; continue; }
      tx.push(inner, len - (inner - off));
    }
    packets += tun.write(tx);
  }
  const times = clock.result();
  tun.close();
  sock.close();
  const errors = tun.errors.total;
  return { impl: 'ts', mode: 'decap', packets: packets - errors, drops, sendErrors: errors, batches, polls, ...times };
}

/** Ready IP-in-IP packets (1400-byte inner UDP, 20 flows) sent back to back. */
function sendLoop(protocol: number, seconds: number, batchSize: number): Result {
  const sock = RawIpipSocket.open({ protocol, rcvbuf: 1 << 16, sndbuf: 8 << 20 });
  const batch = new PacketBatch({ slots: batchSize });
  const b = batch.bytes;
  const tx = batch.outgoing;
  for (let i = 0; i < batchSize; i++) {
    const at = batch.packetStart(i);
    b.fill(0, at, at + 1400);
    b[at] = 0x45;
    b[at + 2] = 1400 >> 8; b[at + 3] = 1400 & 255;
    b[at + 8] = 64; b[at + 9] = 17;
    b.set([250, 0, 28, 3, 250, 0, 27, 3], at + 12);
    b[at + 20] = 0x4e; b[at + 21] = i % 20; b[at + 23] = 9;
    const o = encapsulate(b, at, 1400, LOCAL, STRANGER, 64, i);
    tx.push(o, 1420, STRANGER);
  }
  let packets = 0;
  const clock = new Clock(seconds);
  const reset = (): void => {
    packets = 0;
    sock.errors.reset();
  };
  while (clock.running(reset)) {
    packets += sock.send(tx); // short only when the socket buffer is full: go on sending
  }
  const times = clock.result();
  sock.close();
  const errors = sock.errors.total;
  return { impl: 'ts', mode: `send-proto${protocol}`, packets: packets - errors, drops: 0, sendErrors: errors, ...times };
}

/** N shared sockets drained by one thread: the kernel-side cost of fanning every packet out to N. */
function receiveLoop(count: number, seconds: number, batchSize: number): Result {
  const socks = Array.from({ length: count }, () => RawIpipSocket.open({ rcvbuf: 8 << 20 }));
  if (count > 1) socks.forEach((s, i) => s.share(i, count));
  const batch = new PacketBatch({ slots: batchSize });
  const poller = new Poller(count);
  socks.forEach((s) => poller.add(s.fd));
  const per = new Array<number>(count).fill(0);
  let packets = 0;
  // No warm-up here: the bench starts the generator after the receiver and counts everything.
  const clock = new Clock(seconds, 0);
  while (clock.running(() => {})) {
    if (poller.wait(WAIT_MS) === 0) continue;
    for (let s = 0; s < count; s++) {
      if (!poller.readable(s)) continue;
      const n = socks[s].receive(batch);
      per[s] += n;
      packets += n;
    }
  }
  const times = clock.result();
  socks.forEach((s) => s.close());
  return { impl: 'ts', mode: `receive-${count}`, packets, drops: 0, sendErrors: 0, ...times, perSocket: per };
}

function main(): void {
  const [mode, arg, secondsText, batchText] = process.argv.slice(2);
  const seconds = Number(secondsText);
  const batchSize = batchText ? Number(batchText) : 64;
  if (!arg || !(seconds > 0) || !(batchSize >= 1 && batchSize <= 256)) {
    process.stderr.write('usage: native-loop encap|decap TUN SECONDS [BATCH] | send PROTOCOL SECONDS [BATCH] | receive SOCKETS SECONDS [BATCH]\n');
    process.exit(2);
  }
  let r: Result;
  if (mode === 'encap') r = encapLoop(arg, seconds, batchSize);
  else if (mode === 'decap') r = decapLoop(arg, seconds, batchSize);
  else if (mode === 'send') r = sendLoop(Number(arg), seconds, batchSize);
  else if (mode === 'receive') r = receiveLoop(Number(arg), seconds, batchSize);
  else {
    process.stderr.write(`native-loop: unknown mode ${mode}\n`);
    process.exit(2);
  }
  process.stdout.write(`${JSON.stringify(r)}\n`);
}

main();
