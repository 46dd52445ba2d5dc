/**
 * Round-trip latency container to container, per data path, interleaved: the same two-host topology as
 * bench/iperf.ts, each path built afresh per round (A B C … A B C …), then `ping -c N -i 0.01` from the
 * client container to the server container. Reports the median RTT over all echoes of a path, its spread
 * (10th–90th percentile) and each path's median minus the reference path's (kernel VXLAN by default):
 * what userfan adds per round trip.
 *
 *   npm run build && node dist/bench/latency.js [--paths vxlan,userfan-1w,userfan-1w-nooffload,veth]
 *       [--count 200] [--rounds 3] [--reference vxlan] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import { createFanTopology, type FanTopology } from '../src/lab/topology.js';
import { pathByName, repoRoot, type PathInstance } from './paths/index.js';
import { median } from './report.js';

interface Options {
  paths: string[];
  count: number;
  rounds: number;
  reference: string;
  json?: string;
}

function parse(argv: string[]): Options {
  const o: Options = { paths: ['vxlan', 'userfan-1w', 'userfan-1w-nooffload', 'veth'], count: 200, rounds: 3, reference: 'vxlan' };
  for (let i = 0; i < argv.length; i++) {
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${argv[i - 1]} needs a value`);
      return x;
    };
    const a = argv[i];
    if (a === '--paths') o.paths = v().split(',');
    else if (a === '--count') o.count = Number(v());
    else if (a === '--rounds') o.rounds = Number(v());
    else if (a === '--reference') o.reference = v();
    else if (a === '--json') o.json = v();
    else throw new Error(`unknown option ${a}`);
  }
  if (!(o.count >= 100 && o.rounds >= 1)) throw new Error('--count must be ≥ 100 and --rounds ≥ 1');
  return o;
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

export async function main(argv: string[]): Promise<number> {
  const o = parse(argv);
  const paths = o.paths.map((n) => {
    const p = pathByName(n);
    if (!p) throw new Error(`unknown path ${n}`);
    return p;
  });
  const rtts = new Map<string, number[]>(o.paths.map((p) => [p, []]));
  for (let round = 1; round <= o.rounds; round++) {
    for (const path of paths) {
      let topo: FanTopology | undefined;
      let inst: PathInstance | undefined;
      try {
        topo = await createFanTopology();
        const [a, b] = topo.hosts;
        inst = await path.setup({ topo, a, b, root: repoRoot(), workers: 1, log: () => {} });
        // Warm up (ARP, neighbour entries, the JIT), then measure.
        await topo.exec(inst.client, ['ping', '-c', '20', '-i', '0.01', '-W', '1', inst.server.address], { allowFail: true });
        const r = await topo.exec(inst.client, ['ping', '-c', String(o.count), '-i', '0.01', '-W', '1', inst.server.address], { timeoutMs: 60_000, allowFail: true });
        const times = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000);
        if (times.length < o.count * 0.95) throw new Error(`${path.name}: only ${times.length} of ${o.count} echoes answered`);
        rtts.get(path.name)!.push(...times);
        console.log(`round ${round} ${path.name.padEnd(22)} median ${median(times).toFixed(0)} µs over ${times.length} echoes`);
      } finally {
        await inst?.teardown?.().catch(() => {});
        await topo?.destroy();
      }
    }
  }
  const ref = median(rtts.get(o.reference) ?? []);
  console.log(`\npath                    median µs  p10–p90 µs   − ${o.reference} µs   echoes`);
  const out: Record<string, { medianUs: number; p10Us: number; p90Us: number; minusReferenceUs: number; echoes: number }> = {};
  for (const [name, xs] of rtts) {
    const m = median(xs);
    out[name] = { medianUs: m, p10Us: percentile(xs, 10), p90Us: percentile(xs, 90), minusReferenceUs: m - ref, echoes: xs.length };
    console.log(
      `${name.padEnd(22)} ${m.toFixed(0).padStart(10)}  ${`${percentile(xs, 10).toFixed(0)}–${percentile(xs, 90).toFixed(0)}`.padStart(11)}  ${(m - ref).toFixed(0).padStart(12)}  ${String(xs.length).padStart(7)}`,
    );
  }
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, paths: out }, null, 2));
  return 0;
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (c) => process.exit(c),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
