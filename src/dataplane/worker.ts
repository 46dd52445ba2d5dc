/**
 * A data-plane worker (a piscina task that runs until told to stop): it owns one TUN queue and one raw
 * IP-in-IP socket that receives its hash share of arriving packets, and moves packets both ways in
 * batches:
 *
 *   TUN read (≤64) → egressRoute + encapsulate in place → sendmmsg on the raw socket
 *   recvmmsg (≤64) → decapsulate (checks, anti-spoofing, ECN) → TUN write
 *
 * It never waits for a batch to fill: whatever one read returns goes out at once. Nothing is allocated
 * per packet: batches, lists and counters are made once, before the loop.
 */
import { Fan } from '../fan/fan.js';
import { FanTable } from '../fan/table.js';
import { PacketBatch } from '../io/batch.js';
import { Poller } from '../io/poll.js';
import { RawIpipSocket } from '../io/rawsocket.js';
import { TunQueue } from '../io/tun.js';
import { Drop } from '../wire/drops.js';
import { decapsulate, egressRoute, encapsulate, OUTER_HEADER_LEN } from '../wire/ipip.js';
import { OFF_DST, u32 } from '../wire/ipv4.js';
import { C_DROPS, C_RX_BATCHES, C_RX_BYTES, C_RX_PACKETS, C_TX_BATCHES, C_TX_BYTES, C_TX_PACKETS, CounterTable } from './counters.js';
import { CONTROL_STOP, controlCrashSlot, type WorkerResult, type WorkerTask } from './task.js';

const BATCH = 64;
const WAIT_MS = 20;
const SOCKET_BUFFER = 8 << 20;

export default function runWorker(task: WorkerTask): WorkerResult {
  const fans = new FanTable(task.fans.map((f) => new Fan({ net: f.overlayNet, len: f.overlayLen }, { net: f.underlayNet, len: f.underlayLen }, f.localHost)));
  const control = new Int32Array(task.control);
  const crashSlot = controlCrashSlot(task.index);
  const c = new CounterTable(task.count, task.counters).row(task.index);
  const fds = new Int32Array(task.fds);

  const tun = TunQueue.open(task.tun, { multiQueue: true });
  fds[2 * task.index] = tun.fd;
  let sock: RawIpipSocket;
  try {
    sock = RawIpipSocket.open({ rcvbuf: SOCKET_BUFFER, sndbuf: SOCKET_BUFFER });
  } catch (e) {
    tun.close();
    throw e;
  }
  fds[2 * task.index + 1] = sock.fd;
  try {
    if (task.count > 1) sock.share(task.index, task.count);
    return loop(task, fans, control, crashSlot, c, tun, sock);
  } finally {
    fds[2 * task.index] = -1;
    fds[2 * task.index + 1] = -1;
    tun.close();
    sock.close();
  }
}

function loop(task: WorkerTask, fans: FanTable, control: Int32Array, crashSlot: number, c: Float64Array, tun: TunQueue, sock: RawIpipSocket): WorkerResult {
  const out = new PacketBatch({ slots: BATCH }); // TUN → underlay
  const inb = new PacketBatch({ slots: BATCH }); // underlay → TUN
  const poller = new Poller(2);
  const TUN = poller.add(tun.fd);
  const SOCK = poller.add(sock.fd);
  const ttl = task.ttl;
  const policy = task.policy;
  let id = (task.index * 0x10000) / task.count;
  let sendErrors = 0;
  let writeErrors = 0;
  let idle = true;

  while (Atomics.load(control, CONTROL_STOP) === 0) {
    if (Atomics.load(control, crashSlot) !== 0) {
      Atomics.store(control, crashSlot, 0);
      throw new Error(`worker ${task.index}: crash requested (fault injection)`);
    }
    // Under load both descriptors stay readable: try them directly and only poll (sleep) when the last
    // round found nothing, saving a poll() per round.
    let tunReady = true;
    let sockReady = true;
    if (idle) {
      if (poller.wait(WAIT_MS) === 0) continue;
      if (poller.failed(TUN)) return { index: task.index, reason: 'device-gone', detail: `TUN ${task.tun} reported an error (deleted?)` };
      tunReady = poller.readable(TUN);
      sockReady = poller.readable(SOCK) || poller.failed(SOCK);
    }
    idle = true;

    // Egress: container → TUN → IP-in-IP → underlay.
    if (tunReady) {
      let n: number;
      try {
        n = tun.read(out);
      } catch (e) {
        return { index: task.index, reason: 'device-gone', detail: (e as Error).message };
      }
      if (n > 0) {
        idle = false;
        c[C_TX_BATCHES]++;
        const bytes = out.bytes;
        const rx = out.received;
        const tx = out.outgoing;
        tx.count = 0;
        for (let i = 0; i < n; i++) {
          const off = rx.offsets[i];
          const len = rx.lengths[i];
          if (len > out.packetCapacity) {
            c[C_DROPS + Drop['tx-malformed']]++;
            continue;
          }
          const dst = egressRoute(bytes, off, len, fans);
          if (dst < 0) {
            c[C_DROPS - dst]++;
            continue;
          }
          const src = fans.localHostFor(u32(bytes, off + OFF_DST));
          const o = encapsulate(bytes, off, len, src, dst, ttl, id);
          id = (id + 1) & 0xffff;
          tx.push(o, len + OUTER_HEADER_LEN, dst);
          c[C_TX_PACKETS]++;
          c[C_TX_BYTES] += len;
        }
        let from = 0;
        for (let tries = 0; from < tx.count && tries < 50; tries++) {
          from = sock.send(tx, from);
          if (from < tx.count) poller.wait(1); // socket buffer full: give the kernel a moment
        }
        if (from < tx.count) c[C_DROPS + Drop['tx-send-error']] += tx.count - from;
        const errs = sock.errors.total;
        if (errs !== sendErrors) {
          c[C_DROPS + Drop['tx-send-error']] += errs - sendErrors;
          c[C_TX_PACKETS] -= errs - sendErrors;
          sendErrors = errs;
        }
      }
    }

    // Ingress: underlay → checks → TUN → bridge → container.
    if (sockReady) {
      const n = sock.receive(inb);
      if (n > 0) {
        idle = false;
        c[C_RX_BATCHES]++;
        const bytes = inb.bytes;
        const rx = inb.received;
        const tx = inb.outgoing;
        tx.count = 0;
        for (let i = 0; i < n; i++) {
          const off = rx.offsets[i];
          const len = rx.lengths[i];
          if (len > inb.packetCapacity) {
            c[C_DROPS + Drop['rx-truncated-inner']]++;
            continue;
          }
          const inner = decapsulate(bytes, off, len, fans, policy);
          if (inner < 0) {
            c[C_DROPS - inner]++;
            continue;
          }
          const ilen = len - (inner - off);
          tx.push(inner, ilen);
          c[C_RX_PACKETS]++;
          c[C_RX_BYTES] += ilen;
        }
        let from = 0;
        for (let tries = 0; from < tx.count && tries < 50; tries++) {
          try {
            from = tun.write(tx, from);
          } catch (e) {
            return { index: task.index, reason: 'device-gone', detail: (e as Error).message };
          }
          if (from < tx.count) poller.wait(1);
        }
        if (from < tx.count) c[C_DROPS + Drop['rx-write-error']] += tx.count - from;
        const errs = tun.errors.total;
        if (errs !== writeErrors) {
          c[C_DROPS + Drop['rx-write-error']] += errs - writeErrors;
          c[C_RX_PACKETS] -= errs - writeErrors;
          writeErrors = errs;
        }
      }
    }
  }
  return { index: task.index, reason: 'stopped' };
}
