// What the scale harness (bench/scale.ts) reads about the daemons and the kernel: resident memory and CPU
// time of a process from /proc, all-pairs pings, the kernel's neighbour-table counters and log.
import { readFileSync } from 'node:fs';
import { run } from '../src/lab/netns.js';
import type { FanTopology, Host } from '../src/lab/topology.js';

/** Clock ticks per second of /proc/PID/stat's times (USER_HZ; 100 on every Linux this runs on). */
const USER_HZ = 100;

export interface Memory {
  /** VmRSS, RssAnon, RssFile, RssShmem: KiB. */
  rss: number;
  anon: number;
  file: number;
  shmem: number;
  /** Pss of /proc/PID/smaps_rollup (KiB): shared pages (the node binary's, mostly) split among their users. */
  pss: number;
}

/** A process's resident memory from /proc/PID/status and smaps_rollup (KiB); undefined when it is gone. */
export function memoryOf(pid: number): Memory | undefined {
  const read = (file: string) => {
    try {
      return readFileSync(`/proc/${pid}/${file}`, 'utf8');
    } catch {
      return undefined;
    }
  };
  const status = read('status');
  if (status === undefined) return undefined;
  const rollup = read('smaps_rollup') ?? '';
  const kib = (t: string, key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? NaN);
  return { rss: kib(status, 'VmRSS'), anon: kib(status, 'RssAnon'), file: kib(status, 'RssFile'), shmem: kib(status, 'RssShmem'), pss: kib(rollup, 'Pss') };
}

/** CPU seconds a process has used (utime + stime of /proc/PID/stat, every thread); NaN when it is gone. */
export function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / USER_HZ; // fields 14 and 15, counted from 1 before the name
  } catch {
    return NaN;
  }
}

/** The node process of a daemon started as `ip netns exec NS node …` (ip execs node, so usually pid itself). */
export function daemonPid(pid: number): number {
  try {
    if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'ip') return pid;
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    return kids.find((k) => Number.isInteger(k) && k > 1) ?? pid;
  } catch {
    return pid;
  }
}

/** MemAvailable of /proc/meminfo, MiB. */
export function memAvailableMiB(): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Math.floor(Number(m[1]) / 1024) : 0;
}

/** Busy fraction of the whole machine (all CPUs) between two reads of /proc/stat. */
export function machineTicks(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - (f[4] ?? 0), total };
}

/** Seconds since boot (/proc/uptime), the clock of the kernel log's time stamps. */
export function uptimeS(): number {
  return Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
}

/**
 * "neighbour table overflow" lines in the kernel log (dmesg says "neighbor") stamped after `since` (seconds
 * since boot). The kernel rate-limits them (net_info_ratelimited): a floor, not a count of failures.
 */
export async function overflowLines(since: number): Promise<number> {
  const r = await run(['dmesg'], { allowFail: true, timeoutMs: 10_000 });
  return r.stdout.split('\n').filter((l) => {
    const m = /^\[\s*([\d.]+)\]/.exec(l);
    return m && Number(m[1]) >= since && /neighbou?r table overflow/.test(l);
  }).length;
}

export type PingTarget = 'overlay' | 'underlay';

export interface PingRound {
  target: PingTarget;
  round: number;
  sent: number;
  answered: number;
  lost: number;
  /** Round trips of the answered pings, ms, in no particular order. */
  rtts: number[];
  /** "from → to" of the lost pings (at most 50 kept). */
  lostPairs: string[];
  /** Lines ping printed on stderr (e.g. "sendmsg: No buffer space available"), by text, counted. */
  errors: Record<string, number>;
  seconds: number;
}

function addressOf(h: Host, target: PingTarget): string {
  return target === 'overlay' ? h.slice.gateway : h.underlay;
}

export interface PingOptions {
  /** Seconds ping waits for each answer (ping -W). */
  waitS: number;
  /** Source hosts pinging at once, and pings at once from each (xargs -P). */
  sources: number;
  perSource: number;
}

/** One ping from `from` to every other host, `perSource` at a time: which answered, and their round trips. */
async function pingFrom(topo: FanTopology, from: Host, hosts: Host[], target: PingTarget, o: PingOptions) {
  const src = addressOf(from, target);
  const dsts = hosts.filter((h) => h !== from).map((h) => addressOf(h, target));
  const timeoutMs = Math.ceil(dsts.length / o.perSource) * (o.waitS + 1) * 1000 + 15_000;
  const argv = ['xargs', '-P', String(o.perSource), '-n', '1', 'ping', '-n', '-c', '1', '-W', String(o.waitS), '-I', src];
  const r = await topo.exec(from, argv, { input: dsts.join('\n') + '\n', allowFail: true, timeoutMs });
  const got = new Map<string, number>();
  for (const m of r.stdout.matchAll(/^\d+ bytes from ([\d.]+): icmp_seq=\d+ ttl=\d+ time=([\d.]+) ms/gm)) if (!got.has(m[1])) got.set(m[1], Number(m[2]));
  const errors: Record<string, number> = {};
  for (const line of r.stderr.split('\n').map((l) => l.trim()).filter(Boolean)) errors[line] = (errors[line] ?? 0) + 1;
  return { src, dsts, got, errors };
}

/** One round of all-pairs pings (every host to every other host once). */
export async function pingRound(topo: FanTopology, hosts: Host[], target: PingTarget, round: number, o: PingOptions): Promise<PingRound> {
  const t0 = Date.now();
  const out: PingRound = { target, round, sent: 0, answered: 0, lost: 0, rtts: [], lostPairs: [], errors: {}, seconds: 0 };
  let next = 0;
  const lane = async () => {
    while (next < hosts.length) {
      const from = hosts[next++];
      const r = await pingFrom(topo, from, hosts, target, o);
      out.sent += r.dsts.length;
      for (const d of r.dsts) {
        const rtt = r.got.get(d);
        if (rtt === undefined) {
          out.lost++;
          if (out.lostPairs.length < 50) out.lostPairs.push(`${r.src} → ${d}`);
        } else {
          out.answered++;
          out.rtts.push(rtt);
        }
      }
      for (const [k, v] of Object.entries(r.errors)) out.errors[k] = (out.errors[k] ?? 0) + v;
    }
  };
  await Promise.all([...Array(Math.min(o.sources, hosts.length))].map(lane));
  out.seconds = (Date.now() - t0) / 1000;
  return out;
}

/** The p-th percentile (0–100) of xs, nearest rank; NaN for none. */
export function percentile(xs: readonly number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
