// Where the machine's CPU time went while the bench measured, from /proc: all of it (/proc/stat), and that
// of processes outside the lab's namespaces (a shared machine's other work, which the figures must not
// be charged with). Used by bench/iperf.ts and bench/offload.ts.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';

let ticksPerSecond: number | undefined;

/** The kernel's clock ticks per second (getconf CLK_TCK), asked once; 100 when getconf does not say. */
export function clockTicks(): number {
  ticksPerSecond ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;
  return ticksPerSecond;
}

/** Machine-wide busy CPU time in clock ticks (user+nice+system+irq+softirq; not idle, iowait, steal). */
export function busyTicks(stat = readFileSync('/proc/stat', 'utf8')): number {
  const line = stat.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('/proc/stat has no cpu line');
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq] = f;
  return user + nice + system + (irq ?? 0) + (softirq ?? 0);
}

export type ProcessTicks = Map<number, { start: string; ticks: number }>;

/**
 * CPU ticks (user+system) of every userspace process outside the given network namespaces, by pid
 * (with its start time, against pid reuse). The difference across a run is what other work on the
 * machine took while we measured: the bench's own processes all live in the lab's namespaces.
 */
export function othersTicks(ourNetns: Set<string>): ProcessTicks {
  const out: ProcessTicks = new Map();
  for (const d of readdirSync('/proc')) {
    const pid = Number(d);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (ourNetns.has(readlinkSync(`/proc/${pid}/ns/net`))) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[6]) & 0x00200000) continue; // PF_KTHREAD: softirq work is everyone's, ours included
      out.set(pid, { start: f[19], ticks: Number(f[11]) + Number(f[12]) });
    } catch {
      /* gone, or a kernel thread without ns */
    }
  }
  return out;
}

/** Ticks the processes of `after` used since `before` (a process new since then: all of its ticks). */
export function othersDelta(before: ProcessTicks, after: ProcessTicks): number {
  let sum = 0;
  for (const [pid, a] of after) {
    const b = before.get(pid);
    sum += b && b.start === a.start ? a.ticks - b.ticks : a.ticks;
  }
  return sum;
}

/** The network namespaces of a lab, as /proc/PID/ns/net links name them (net:[inode]). */
export function labNetns(namespaces: Iterable<string>): Set<string> {
  const s = new Set<string>();
  for (const n of namespaces) {
    try {
      s.add(`net:[${statSync(`/run/netns/${n}`).ino}]`);
    } catch {
      /* deleted */
    }
  }
  return s;
}

/**
 * Wait until processes outside the lab use less than `belowPercent` of all cores over 0.5 s (the lab's own
 * idle daemons don't count), at most maxMs. Returns that busy %.
 */
export async function waitQuiet(namespaces: Iterable<string>, maxMs: number, cores: number, belowPercent: number): Promise<number> {
  const until = Date.now() + maxMs;
  const ns = labNetns(namespaces);
  for (;;) {
    const b0 = othersTicks(ns);
    await new Promise((r) => setTimeout(r, 500));
    const pct = (100 * othersDelta(b0, othersTicks(ns))) / clockTicks() / 0.5 / cores;
    if (pct < belowPercent || Date.now() >= until) return pct;
  }
}
