/**
 * A process's threads as /proc shows them, written once: each thread's status file and what it is
 * blocked in right now.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface ThreadView {
  tid: number;
  /** /proc/PID/task/TID/comm (the thread's name). */
  name: string;
  /** /proc/PID/task/TID/status. */
  status: string;
  /**
   * /proc/PID/task/TID/syscall split into numbers: [syscall number, arg1..arg6, sp, pc] while the thread is
   * blocked in a system call; [] while it runs (`running`) or when it cannot be read.
   */
  syscall: number[];
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined; // a thread that ended meanwhile
  }
}

/** Every thread of `pid` that is still there while it is read. */
export function threads(pid: number): ThreadView[] {
  const out: ThreadView[] = [];
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    const dir = `/proc/${pid}/task/${t}`;
    const status = read(`${dir}/status`);
    if (status === undefined) continue;
    const sc = (read(`${dir}/syscall`) ?? '').trim();
    out.push({
      tid: Number(t),
      name: (read(`${dir}/comm`) ?? '').trim(),
      status,
      syscall: /^\d/.test(sc) ? sc.split(' ').map((x) => Number(x)) : [],
    });
  }
  return out;
}

/** A field of a thread's status file as a number (e.g. voluntary_ctxt_switches). */
export function statusField(status: string, field: string): number {
  return Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
}
