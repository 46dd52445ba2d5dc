/**
 * Which CPUs the workers run on (up --cpus). Left alone, the scheduler moves a worker to whichever CPU
 * woke it, and each move leaves its working set (V8's code and heap, its packet buffers) in the other
 * CPU's cache; pinned, worker i stays on cpus[i mod n], the list sorted (it is a set). It is written the way taskset -c and
 * systemd's CPUAffinity= write it: "1", "0,2", "0-3", "0-1,6".
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../fan/errors.js';

/** Parses "0-3,6" into [0, 1, 2, 3, 6] (sorted, no duplicates); throws a RangeError saying what is wrong. */
export function parseCpuList(text: string): number[] {
  const out = new Set<number>();
  if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(text)) throw new RangeError('must be CPU numbers and ranges separated by commas, e.g. 1 or 0,2 or 0-3');
  for (const part of text.split(',')) {
    const [lo, hi = lo] = part.split('-').map(Number);
    if (hi < lo) throw new RangeError(`the range ${part} runs backwards`);
    if (hi >= 4096) throw new RangeError(`CPU ${hi} is beyond what Linux numbers (0-4095)`);
    for (let c = lo; c <= hi; c++) out.add(c);
  }
  return [...out].sort((a, b) => a - b);
}

/** Writes a sorted CPU list back in ranges: [0, 1, 2, 5] → "0-2,5". */
export function formatCpuList(cpus: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < cpus.length; ) {
    let j = i;
    while (j + 1 < cpus.length && cpus[j + 1] === cpus[j] + 1) j++;
    parts.push(j === i ? String(cpus[i]) : `${cpus[i]}-${cpus[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** The CPUs this process may run on (its affinity: taskset, cpusets, systemd's CPUAffinity=). */
export function allowedCpus(status = readFileSync('/proc/self/status', 'utf8')): number[] {
  const m = /^Cpus_allowed_list:\s*(\S+)$/m.exec(status);
  if (!m) throw new Error('no Cpus_allowed_list in /proc/self/status');
  return parseCpuList(m[1]);
}

/** The --cpus option: a CPU list, every CPU of it one this process may run on. */
export function cpusOption(field: string, text: string, allowed: readonly number[] = allowedCpus()): number[] {
  let cpus: number[];
  try {
    cpus = parseCpuList(text);
  } catch (e) {
    throw new ConfigError(field, text, (e as Error).message);
  }
  const outside = cpus.filter((c) => !allowed.includes(c));
  if (outside.length) throw new ConfigError(field, text, `${outside.length === 1 ? 'CPU' : 'CPUs'} ${formatCpuList(outside)} ${outside.length === 1 ? 'is' : 'are'} not among the CPUs this process may run on (${formatCpuList(allowed)})`);
  return cpus;
}
