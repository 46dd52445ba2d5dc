/**
 * Liveness of a daemon's state file: a pid alone is not enough, since pids (and the namespace inodes that
 * name state directories) are reused; the process must also have started when the daemon did.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { daemonAlive, procStart } from '../../src/control/pid.js';

describe('daemonAlive', () => {
  it('is true for a running process with its own start time', () => {
    const start = procStart(process.pid);
    expect(start).toMatch(/^\d+$/);
    expect(daemonAlive({ pid: process.pid, pidStart: start })).toBe(true);
  });

  it('is false for a live pid that started at another time (a reused pid)', () => {
    const start = Number(procStart(process.pid));
    expect(daemonAlive({ pid: process.pid, pidStart: String(start + 1) })).toBe(false);
  });

  it('is false for a pid that no longer runs, whatever the start time', () => {
    const child = spawnSync('true');
    expect(child.pid).toBeGreaterThan(0);
    expect(procStart(child.pid!)).toBe('');
    expect(daemonAlive({ pid: child.pid!, pidStart: '1' })).toBe(false);
    expect(daemonAlive({ pid: child.pid! })).toBe(false);
  });

  it('judges old state files without pidStart by the pid alone', () => {
    expect(daemonAlive({ pid: process.pid })).toBe(true);
  });
});
