/**
 * Micro-benchmark of the per-packet codec: egressRoute + encapsulate on the way out, decapsulate on the
 * way in, over 1400-byte packets in a shared buffer, inside a worker thread (where the data plane runs).
 * Reports nanoseconds per packet (median and range of rounds) and the garbage collections that happened
 * during the timed packets — the goal is none.
 *
 *   npm run build && node dist/bench/codec.js [--packets 10000000] [--rounds 5]
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { PerformanceObserver } from 'node:perf_hooks';
import { parseFan } from '../src/fan/parse.js';
import { FanTable } from '../src/fan/table.js';
import { parseIPv4 as ip } from '../src/fan/addr.js';
import { checksum } from '../src/wire/checksum.js';
import { decapsulate, egressRoute, encapsulate, ROUTE_DST, ROUTE_SRC } from '../src/wire/ipip.js';
import { putU16, putU32 } from '../src/wire/ipv4.js';

interface Result {
  packets: number;
  nsPerPacket: number[];
  gcCount: number;
  heapDeltaBytes: number;
  checksumSink: number;
}

const SLOT = 2048;
const HEADROOM = 64;
const BATCH = 64;
const PKT = 1400;

function runInWorker(packets: number, rounds: number): Result {
  const fansA = new FanTable([parseFan('250.0.0.0/8', '198.18.0.28/16', {}, () => [])]);
  const fansB = new FanTable([parseFan('250.0.0.0/8', '198.18.0.27/16', {}, () => [])]);
  const buf = new Uint8Array(new SharedArrayBuffer(SLOT * BATCH));
  for (let k = 0; k < BATCH; k++) {
    const o = k * SLOT + HEADROOM;
    buf[o] = 0x45;
    putU16(buf, o + 2, PKT);
    putU16(buf, o + 4, k);
    putU16(buf, o + 6, 0x4000);
    buf[o + 8] = 64;
    buf[o + 9] = 17;
    putU32(buf, o + 12, ip('250.0.28.3'));
    putU32(buf, o + 16, (ip('250.0.27.0') + 2 + (k % 200)) >>> 0);
    putU16(buf, o + 10, checksum(buf, o, 20));
  }
  let id = 0;
  let sink = 0;
  const route = new Int32Array(2);
  const loop = (n: number) => {
    for (let p = 0; p < n; ) {
      for (let k = 0; k < BATCH && p < n; k++, p++) {
        const off = k * SLOT + HEADROOM;
        if (egressRoute(buf, off, PKT, fansA, route) !== 0) throw new Error('bench packet dropped on egress');
        const o = encapsulate(buf, off, PKT, route[ROUTE_SRC], route[ROUTE_DST], 64, id++);
        const inner = decapsulate(buf, o, PKT + 20, fansB);
        if (inner !== off) throw new Error(`bench packet dropped on ingress: ${inner}`);
        sink ^= buf[o + 10];
      }
    }
  };
  loop(200_000); // warm up: let the JIT settle before counting
  let gcs = 0;
  const obs = new PerformanceObserver((list) => (gcs += list.getEntries().length));
  obs.observe({ entryTypes: ['gc'] });
  const heap0 = process.memoryUsage().heapUsed;
  const ns: number[] = [];
  const per = Math.ceil(packets / rounds);
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    loop(per);
    ns.push(Number(process.hrtime.bigint() - t0) / per);
  }
  const heapDelta = process.memoryUsage().heapUsed - heap0;
  // GC entries are delivered asynchronously: take them after the timed loop, synchronously.
  gcs += obs.takeRecords().length;
  obs.disconnect();
  return { packets: per * rounds, nsPerPacket: ns, gcCount: gcs, heapDeltaBytes: heapDelta, checksumSink: sink };
}

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

if (!isMainThread) {
  const { packets, rounds } = workerData as { packets: number; rounds: number };
  parentPort!.postMessage(runInWorker(packets, rounds));
} else {
  const packets = arg('--packets', 10_000_000);
  const rounds = arg('--rounds', 5);
  const w = new Worker(new URL(import.meta.url), { workerData: { packets, rounds } });
  w.once('message', (r: Result) => {
    const s = [...r.nsPerPacket].sort((a, b) => a - b);
    const med = s[Math.floor(s.length / 2)];
    console.log(`codec: egressRoute+encapsulate+decapsulate of ${PKT}-byte packets in a worker thread`);
    console.log(`  packets      ${r.packets.toLocaleString('en')}`);
    console.log(`  ns/packet    median ${med.toFixed(1)}  range ${s[0].toFixed(1)}–${s[s.length - 1].toFixed(1)}  (${rounds} rounds)`);
    console.log(`  Mpps         ${(1000 / med).toFixed(2)} (one core, both directions per packet)`);
    console.log(`  GCs          ${r.gcCount} during the timed packets; heap delta ${r.heapDeltaBytes} bytes`);
    if (process.argv.includes('--json')) console.log(JSON.stringify({ ...r, medianNs: med }));
  });
  w.once('error', (e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
