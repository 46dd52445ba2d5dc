/**
 * Round-trip latency container to container, per data path, interleaved: the same two-host topology as
 * bench/iperf.ts, each path built afresh per round (A B C … A B C …), warmed up with --warmup echoes
 * (ping -f), then `ping -c N -i 0.01` from the client container to the server container. Reports the
 * median RTT over all echoes of a path, its spread (10th–90th percentile) and each path's median minus
 * the reference path's (kernel VXLAN by default): what userfan adds per round trip. Five rounds by
 * default: on these shared machines one path's round medians differ by 10–20 µs, and now and then a
 * disturbed round doubles even VXLAN's.
 *
 * Then what a thread wake-up costs on this machine (bench/wake.c: two threads ping-ponging over pipes,
 * on one CPU and on two, with the CPUs idle in between as they are between pings). Through VXLAN an
 * echo's round trip runs inside ping's own send (its median is below the cost of one wake-up of another
 * CPU here), while through userfan each echo wakes a worker three times and ping once; on a machine where
 * waking an idle CPU is slow (a VM whose idle vCPUs halt), that, not the packet work, is most of the
 * difference. --pin CPU runs everything (daemons, ping, the kernel work they cause) on that one CPU,
 * where every wake-up is the cheap kind: what is left is the packet work. --idle-poll on holds the
 * kernel's CPU latency limit at 0 (/dev/cpu_dma_latency) for the run, so idle CPUs poll instead of
 * halting and a cross-CPU wake-up is cheap too; `both` measures every path, and the wake-ups, with and
 * without it, interleaved within each round.
 *
 *   npm run build && node dist/bench/latency.js [--paths vxlan,userfan,userfan-1w,userfan-1w-nooffload,veth]
 *       [--count 200] [--rounds 5] [--reference vxlan] [--warmup 3000] [--pin CPU] [--idle-poll off|on|both]
 *       [--json FILE]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { holdCpuLatency, type CpuLatencyHold } from './cpu-latency.js';
import { PACKAGE_ROOT } from '../src/lab/paths.js';
import { pathByName } from './paths/index.js';
import { echoRtts, runIfMain, warmUpEchoes, withPath } from './echo.js';
import { median } from './report.js';

interface Options {
  paths: string[];
  count: number;
  rounds: number;
  reference: string;
  /** Echoes sent as fast as they come back (ping -f) before measuring. */
  warmup: number;
  pin?: number;
  /** Idle CPUs halt (off, the machine's own setting), poll (on: CPU latency limit 0), or both, interleaved. */
  idlePoll: 'off' | 'on' | 'both';
  json?: string;
}

function parse(argv: string[]): Options {
  const o: Options = { paths: ['vxlan', 'userfan', 'userfan-1w', 'userfan-1w-nooffload', 'veth'], count: 200, rounds: 5, reference: 'vxlan', warmup: 3000, idlePoll: 'off' };
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
    else if (a === '--pin') o.pin = Number(v());
    else if (a === '--warmup') o.warmup = Number(v());
    else if (a === '--idle-poll') {
      const x = v();
      if (x !== 'off' && x !== 'on' && x !== 'both') throw new Error(`--idle-poll must be off, on or both, not ${x}`);
      o.idlePoll = x;
    }
    else throw new Error(`unknown option ${a}`);
  }
  if (!(o.count >= 100 && o.rounds >= 1)) throw new Error('--count must be ≥ 100 and --rounds ≥ 1');
  if (!(Number.isInteger(o.warmup) && o.warmup >= 0)) throw new Error('--warmup must be a whole number of echoes');
  // cpus(), not availableParallelism(): the run re-executes itself under taskset, which leaves it one CPU.
  if (o.pin !== undefined && !(Number.isInteger(o.pin) && o.pin >= 0 && o.pin < cpus().length)) throw new Error(`--pin must be a CPU number, 0 to ${cpus().length - 1}`);
  return o;
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

interface WakeResult {
  peerCpu: number;
  rounds: number;
  gapUs: number;
  medianUs: number;
  p10Us: number;
  p90Us: number;
}

/**
 * bench/wake.c, compiled here: the round trip of two threads waking each other (two wake-ups), the peer
 * on CPU 0 (the same CPU) and, with two or more CPUs, on CPU 1. Undefined, with a reason, without gcc.
 */
function wakeCosts(): { sameCpu?: WakeResult; otherCpu?: WakeResult; skipped?: string } {
  const out = join(PACKAGE_ROOT, 'bench', 'out');
  const bin = join(out, 'wake');
  mkdirSync(out, { recursive: true });
  const cc = spawnSync('gcc', ['-O2', '-Wall', '-pthread', '-o', bin, join(PACKAGE_ROOT, 'bench', 'wake.c')], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) return { skipped: `cannot compile bench/wake.c: ${cc.error?.message ?? cc.stderr.trim()}` };
  const runOne = (cpu: number): WakeResult => {
    const r = spawnSync(bin, [String(cpu), '2000', '1000'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) throw new Error(`bench/wake ${cpu}: ${r.stderr || r.error?.message}`);
    return JSON.parse(r.stdout) as WakeResult;
  };
  return { sameCpu: runOne(0), otherCpu: cpus().length > 1 ? runOne(1) : undefined };
}

export async function main(argv: string[]): Promise<number> {
  const o = parse(argv);
  if (o.pin !== undefined && process.env.USERFAN_LATENCY_PINNED !== String(o.pin)) {
    // Pin this process before it starts anything: every process of the lab inherits the affinity.
    const r = spawnSync('taskset', ['-c', String(o.pin), process.execPath, ...process.argv.slice(1)], {
      stdio: 'inherit', env: { ...process.env, USERFAN_LATENCY_PINNED: String(o.pin) },
    });
    if (r.error) throw new Error(`--pin needs taskset (util-linux): ${r.error.message}`);
    return r.status ?? 1;
  }
  if (o.pin !== undefined) console.log(`everything pinned to CPU ${o.pin}`);
  const paths = o.paths.map((n) => {
    const p = pathByName(n);
    if (!p) throw new Error(`unknown path ${n}`);
    return p;
  });
  const settings = o.idlePoll === 'both' ? [false, true] : [o.idlePoll === 'on'];
  const key = (name: string, poll: boolean) => (poll ? `${name} +idle-poll` : name);
  const rtts = new Map<string, number[]>(settings.flatMap((poll) => o.paths.map((p) => [key(p, poll), []] as [string, number[]])));
  /** Runs fn with idle CPUs polling (the CPU latency limit held at 0) or as the machine has them. */
  const withIdlePoll = async <T>(poll: boolean, fn: () => Promise<T> | T): Promise<T> => {
    let hold: CpuLatencyHold | undefined;
    try {
      if (poll) hold = holdCpuLatency(0);
      return await fn();
    } finally {
      hold?.release();
    }
  };
  if (o.idlePoll !== 'off') console.log('+idle-poll: the CPU latency limit is held at 0 µs (/dev/cpu_dma_latency), so idle CPUs poll instead of halting');
  for (let round = 1; round <= o.rounds; round++) {
    for (const poll of settings) {
      for (const path of paths) {
        const name = key(path.name, poll);
        await withPath(path, async (t, inst) => {
          const server = inst.server.address;
          const client = inst.client;
          const times = await withIdlePoll(poll, async () => {
            await warmUpEchoes(t, client, server, o.warmup);
            return echoRtts(t, client, server, o.count);
          });
          if (times.length < o.count * 0.95) throw new Error(`${name}: only ${times.length} of ${o.count} echoes answered`);
          rtts.get(name)!.push(...times);
          console.log(`round ${round} ${name.padEnd(32)} median ${median(times).toFixed(0)} µs over ${times.length} echoes`);
        });
      }
    }
  }
  console.log(`\npath                              median µs  p10–p90 µs   − ${o.reference} µs   echoes`);
  const out: Record<string, { medianUs: number; p10Us: number; p90Us: number; minusReferenceUs: number; echoes: number }> = {};
  for (const poll of settings) {
    const ref = median(rtts.get(key(o.reference, poll)) ?? []);
    for (const p of o.paths) {
      const name = key(p, poll);
      const xs = rtts.get(name)!;
      const m = median(xs);
      out[name] = { medianUs: m, p10Us: percentile(xs, 10), p90Us: percentile(xs, 90), minusReferenceUs: m - ref, echoes: xs.length };
      console.log(
        `${name.padEnd(32)} ${m.toFixed(0).padStart(10)}  ${`${percentile(xs, 10).toFixed(0)}–${percentile(xs, 90).toFixed(0)}`.padStart(11)}  ${(m - ref).toFixed(0).padStart(12)}  ${String(xs.length).padStart(7)}`,
      );
    }
  }
  // The wake-up costs, unpinned (the helper pins its own two threads), under each setting measured.
  const wake: Record<string, ReturnType<typeof wakeCosts>> = {};
  for (const poll of settings) {
    const label = poll ? 'idle CPUs polling' : 'idle CPUs as the machine has them';
    const w = (wake[poll ? 'idlePoll' : 'machine'] = o.pin === undefined ? await withIdlePoll(poll, wakeCosts) : { skipped: 'not measured under --pin' });
    if (w.sameCpu) {
      const per = (r: WakeResult) => `${r.medianUs.toFixed(1)} µs round trip (${r.p10Us.toFixed(1)}–${r.p90Us.toFixed(1)}), ~${(r.medianUs / 2).toFixed(1)} µs a wake-up`;
      console.log(`\nthread wake-ups here, ${label} (bench/wake.c, 2000 round trips, 1 ms idle before each):`);
      console.log(`  same CPU:   ${per(w.sameCpu)}`);
      if (w.otherCpu) console.log(`  other CPU:  ${per(w.otherCpu)}`);
    } else if (w.skipped && o.pin === undefined) {
      console.log(`\nthread wake-up cost not measured: ${w.skipped}`);
    }
  }
  if (o.pin === undefined) console.log('an echo through userfan wakes a worker 3 times and ping once; through VXLAN it runs inside ping\'s own send');
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, paths: out, wake }, null, 2));
  return 0;
}

runIfMain(import.meta.url, main);
