// One size of the scale harness (bench/scale.ts): N hosts on one underlay bridge, `userfan up` in each,
// what it costs to bring them up and keep them idle, and whether every host reaches every other.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { cleanupStale, listNamespaces, LAB_STATE_DIR } from '../src/lab/netns.js';
import { arpCacheStats, readNeighbourLimits, type NeighbourLimits } from '../src/lab/neighbour-limits.js';
import { pidAlive } from '../src/control/pid.js';
import { createFanTopology, type FanTopology, type HostSpec } from '../src/lab/topology.js';
import { startDaemon, UserfanLab, type Daemon } from '../src/lab/userfan-lab.js';
import {
  cpuSecondsOf, daemonPid, machineTicks, memoryOf, overflowLines, percentile, pingRound, uptimeS, type Memory, type PingOptions, type PingRound, type PingTarget,
} from './scale-probe.js';

/** This harness's lab prefixes: `ufsc` + 3 base36 characters (7 long: the lab's random ones are 6). */
const PREFIX_STEM = 'ufsc';

export interface ScaleOptions extends PingOptions {
  /** All-pairs rounds, per target. */
  rounds: number;
  targets: PingTarget[];
  /** Daemons started at once. */
  upParallel: number;
  workers: number;
  upArgs: string[];
  /** Seconds of quiet over which idle CPU is measured. */
  quietS: number;
  /** false: leave the kernel's neighbour limits as they are (to see what happens without room). */
  neighbourRoom: boolean;
  /** Don't start userfan (underlay pings only). */
  noDaemons: boolean;
  log: (line: string) => void;
}

export interface Spread {
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

export interface ScaleResult {
  hosts: number;
  /** Seconds to build the namespaces (not userfan). */
  buildS: number;
  /** Seconds from the first `userfan up` to the last "ready", and each daemon's own. */
  upS: number;
  upEachS: Spread;
  rounds: (Omit<PingRound, 'rtts'> & { rtt: Spread })[];
  /** Daemons' RSS (MiB) after the pings and the quiet interval; with its parts. */
  rssMiB: Spread;
  rssParts: { anon: number; file: number; shmem: number; pss: number };
  /** Each daemon's CPU (% of one CPU) over the quiet interval, right after up and after the pings. */
  idleCpuPct: Spread;
  idleCpuAfterPingsPct: Spread;
  machineBusyPct: number;
  neighbourLimits: NeighbourLimits;
  /** The kernel's neighbour table over the run: entries at the end, new table_fulls, new overflow log lines. */
  kernel: { entries: number; tableFulls: number; overflowLines: number };
  /** userfan's own view, summed over the daemons (show --json): packets each way, drops by reason, log events. */
  userfan: { tx: number; rx: number; drops: Record<string, number>; events: Record<string, number> };
}

export function spread(xs: readonly number[]): Spread {
  const mean = xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
  return { p50: percentile(xs, 50), p99: percentile(xs, 99), max: xs.length ? Math.max(...xs) : NaN, mean };
}

/** N hosts h1…hN at 198.18.0.1…N (slices 250.0.1.0/24…). */
export function scaleSpecs(n: number): HostSpec[] {
  if (!Number.isInteger(n) || n < 2 || n > 250) throw new Error(`hosts: 2..250, got ${n}`);
  return Array.from({ length: n }, (_, i) => ({ name: `h${i + 1}`, underlay: `198.18.0.${i + 1}` }));
}

/** Removes what earlier runs of this harness left (their owner is gone); never another prefix's. */
export async function cleanupOwnLeftovers(): Promise<string[]> {
  const mine = (p: string) => new RegExp(`^${PREFIX_STEM}[a-z0-9]{3}$`).test(p);
  const prefixes = new Set<string>();
  for (const ns of await listNamespaces()) {
    const p = ns.split('-')[0];
    if (mine(p)) prefixes.add(p);
  }
  let files: string[] = [];
  try {
    files = readdirSync(LAB_STATE_DIR).filter(mine);
  } catch {}
  for (const f of files) prefixes.add(f);
  const removed: string[] = [];
  for (const p of prefixes) {
    let owner = 0;
    try {
      owner = JSON.parse(readFileSync(`${LAB_STATE_DIR}/${p}`, 'utf8')).pid;
    } catch {}
    if (owner && pidAlive(owner)) continue;
    removed.push(...(await cleanupStale(p)));
  }
  return removed;
}

function newPrefix(): string {
  return PREFIX_STEM + (randomBytes(4).readUInt32BE(0) % 36 ** 3).toString(36).padStart(3, '0');
}

/** Starts a daemon on every host, `parallel` at a time; each one's seconds to "ready". */
async function upAll(lab: UserfanLab, o: ScaleOptions, events: Record<string, number>): Promise<number[]> {
  const each: number[] = [];
  let next = 0;
  const onLog = (_h: string, line: string) => {
    const m = /"event":"([^"]+)"/.exec(line);
    if (m) events[m[1]] = (events[m[1]] ?? 0) + 1;
  };
  const lane = async () => {
    while (next < lab.hosts.length) {
      const h = lab.hosts[next++];
      const t = Date.now();
      const args = ['-o', h.slice.overlay, '-u', h.underlayCidr, '--workers', String(o.workers), ...o.upArgs];
      let d: Daemon;
      try {
        d = await startDaemon(lab.topo, h, args, onLog);
      } catch (e) {
        // A namespace inode reused from a dead lab whose daemon was killed before it removed its state
        // (/run/userfan/net-INODE), naming a pid that another process has now: once more after a pause.
        if (!/EEXIST/.test((e as Error).message)) throw e;
        o.log(`  ${h.name}: ${(e as Error).message.split('\n')[1] ?? 'EEXIST'}; once more in 2 s`);
        events['retried-eexist'] = (events['retried-eexist'] ?? 0) + 1;
        await new Promise((r) => setTimeout(r, 2000));
        d = await startDaemon(lab.topo, h, args, onLog);
      }
      lab.daemons.push(d);
      each.push((Date.now() - t) / 1000);
    }
  };
  await Promise.all([...Array(Math.max(1, o.upParallel))].map(lane));
  return each;
}

/** How long a daemon has to take down what it made after SIGTERM (then SIGKILL, which leaves its state behind). */
const STOP_GRACE_MS = 20_000;

/** SIGTERM to every daemon, 8 at a time, each given STOP_GRACE_MS; how many had to be killed. */
async function stopAll(lab: UserfanLab): Promise<number> {
  let killed = 0;
  let next = 0;
  const lane = async () => {
    while (next < lab.daemons.length) {
      const p = lab.daemons[next++].process;
      await p.stop(STOP_GRACE_MS);
      if (p.exitSignal === 'SIGKILL') killed++;
    }
  };
  await Promise.all([...Array(8)].map(lane));
  return killed;
}

/** Each daemon's CPU over `seconds` of quiet (% of one CPU), and the machine's busy %. */
async function idleCpu(pids: number[], seconds: number): Promise<{ each: number[]; machine: number }> {
  const a = pids.map(cpuSecondsOf);
  const m0 = machineTicks();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const dt = (performance.now() - t0) / 1000;
  const m1 = machineTicks();
  const each = pids.map((p, i) => (100 * (cpuSecondsOf(p) - a[i])) / dt).filter(Number.isFinite);
  return { each, machine: (100 * (m1.busy - m0.busy)) / Math.max(1, m1.total - m0.total) };
}

/** Packets and drops by reason summed over every daemon's `show --json`. */
async function userfanCounters(lab: UserfanLab): Promise<{ tx: number; rx: number; drops: Record<string, number> }> {
  const drops: Record<string, number> = {};
  let tx = 0;
  let rx = 0;
  let next = 0;
  const lane = async () => {
    while (next < lab.hosts.length) {
      const h = lab.hosts[next++];
      const rows = await lab.show(h).catch(() => [] as Array<Record<string, any>>);
      for (const row of rows) {
        tx += Number(row.txPackets ?? 0);
        rx += Number(row.rxPackets ?? 0);
        for (const [k, v] of Object.entries((row.dropsByReason ?? {}) as Record<string, number>)) if (v) drops[k] = (drops[k] ?? 0) + v;
      }
    }
  };
  await Promise.all([lane(), lane()]);
  return { tx, rx, drops };
}

async function pings(topo: FanTopology, o: ScaleOptions): Promise<ScaleResult['rounds']> {
  const out: ScaleResult['rounds'] = [];
  for (const target of o.targets) {
    for (let r = 1; r <= o.rounds; r++) {
      const p = await pingRound(topo, topo.hosts, target, r, o);
      const { rtts, ...rest } = p;
      out.push({ ...rest, rtt: spread(rtts) });
      o.log(`  ${target} round ${r}: ${p.answered}/${p.sent} answered, ${p.lost} lost, rtt p50 ${percentile(rtts, 50)} ms p99 ${percentile(rtts, 99)} ms, ${p.seconds.toFixed(1)} s` +
        (Object.keys(p.errors).length ? `; ping said ${JSON.stringify(p.errors).slice(0, 300)}` : ''));
    }
  }
  return out;
}

/** Builds N hosts, brings userfan up on each, measures, pings all pairs, tears everything down. */
export async function runScale(n: number, o: ScaleOptions): Promise<ScaleResult> {
  const kernel0 = { stats: arpCacheStats(), since: uptimeS() };
  const t0 = Date.now();
  const topo = await createFanTopology({ specs: scaleSpecs(n), underlayBridge: true, prefix: newPrefix(), neighbourRoom: o.neighbourRoom });
  const lab = new UserfanLab(topo, [], []);
  const events: Record<string, number> = {};
  try {
    const buildS = (Date.now() - t0) / 1000;
    o.log(`  ${n} hosts built in ${buildS.toFixed(1)} s (${topo.prefix}); neighbour limits ${JSON.stringify(readNeighbourLimits())}`);
    const t1 = Date.now();
    const upEach = o.noDaemons ? [] : await upAll(lab, o, events);
    const upS = (Date.now() - t1) / 1000;
    const pids = lab.daemons.map((d) => daemonPid(d.process.pid!));
    if (!o.noDaemons) o.log(`  ${n} daemons up in ${upS.toFixed(1)} s`);
    await new Promise((r) => setTimeout(r, 2000));
    const idle = await idleCpu(pids, o.quietS);
    const rounds = await pings(topo, o);
    const idle2 = await idleCpu(pids, o.quietS);
    const mems = pids.map(memoryOf).filter((m): m is Memory => !!m);
    const kernel1 = arpCacheStats();
    const counters = o.noDaemons ? { tx: 0, rx: 0, drops: {} } : await userfanCounters(lab);
    const mib = (k: keyof Memory) => mems.map((m) => m[k] / 1024);
    return {
      hosts: n, buildS, upS, upEachS: spread(upEach), rounds,
      rssMiB: spread(mib('rss')),
      rssParts: { anon: spread(mib('anon')).p50, file: spread(mib('file')).p50, shmem: spread(mib('shmem')).p50, pss: spread(mib('pss')).p50 },
      idleCpuPct: spread(idle.each), idleCpuAfterPingsPct: spread(idle2.each), machineBusyPct: idle2.machine,
      neighbourLimits: readNeighbourLimits(),
      kernel: {
        entries: kernel1?.entries ?? NaN,
        tableFulls: (kernel1?.tableFulls ?? 0) - (kernel0.stats?.tableFulls ?? 0),
        overflowLines: await overflowLines(kernel0.since),
      },
      userfan: { ...counters, events },
    };
  } finally {
    const t = Date.now();
    const killed = await stopAll(lab);
    await lab.destroy();
    o.log(`  torn down in ${((Date.now() - t) / 1000).toFixed(1)} s${killed ? `; ${killed} daemons did not stop within ${STOP_GRACE_MS / 1000} s and were killed` : ''}`);
  }
}
