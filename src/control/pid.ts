import { readFileSync } from 'node:fs';
/** Whether a process runs (signal 0: EPERM means it does, as someone else's). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** When a process started (field 22 of /proc/PID/stat, clock ticks since boot), or '' if it is gone. */
export function procStart(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

/**
 * Whether the daemon a state file names still runs: its pid is alive and started when the daemon did.
 * Pids are reused (and so are network namespaces' inodes, which name the state directories): a pid alone
 * once made `up` refuse a fan as "already up" for a daemon long dead. State files written before
 * `pidStart` existed are judged by the pid alone.
 */
export function daemonAlive(s: { pid: number; pidStart?: string }): boolean {
  if (!pidAlive(s.pid)) return false;
  return s.pidStart === undefined || procStart(s.pid) === s.pidStart;
}
