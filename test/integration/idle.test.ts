/**
 * An idle daemon sleeps (root, namespace lab). Its idle workers used to wake every 20 ms to look at their
 * stop flag: 50 wake-ups a second each, which on this kind of VM pulled the echo path of the busy worker
 * apart (echoes 124 µs with two workers per host against 69 with one; README, Performance: latency).
 * Now a worker sleeps up to the addon's cap (250 ms) and the pool wakes it through an eventfd when it
 * must stop or crash. Counted here: the voluntary context switches of all the daemon's threads over 2 s
 * without traffic (/proc/PID/task/TID/status). Then an idle worker is crashed (fault injection, which
 * goes through the same wake-up): it is replaced and the host carries traffic again. (Stops go through
 * it too, in every lab's teardown.)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createUserfanLab } from '../../src/lab/userfan-lab.js';

/** Voluntary context switches of every thread of process `pid` so far. */
function sleeps(pid: number): number {
  let n = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      n += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return n;
}

describe('an idle daemon', () => {
  it('sleeps: its threads wake a few times a second, not every 20 ms; the pool still wakes a worker at once', async () => {
    const lab = await createUserfanLab({ workers: 2 });
    try {
      const [A] = lab.hosts;
      const [[a], [b]] = lab.containers;
      const pid = (await lab.show(A))[0].pid as number;
      expect((await lab.topo.exec(a, ['ping', '-c', '5', '-i', '0.01', '-q', b.address])).stdout).toMatch(/5 received/);
      await new Promise((r) => setTimeout(r, 500)); // the last busy polls are over
      const before = sleeps(pid);
      await new Promise((r) => setTimeout(r, 2000));
      const woke = sleeps(pid) - before;
      // Two workers at 20 ms made ≥ 200; now each wakes every 250 ms (≤ 16), the main thread as often.
      expect(woke, `${woke} wake-ups in 2 s`).toBeLessThan(80);

      // Crash both of A's workers while they sleep: each is replaced, and echoes go through again.
      const restarts = async () => JSON.parse((await lab.cli(A, ['stats', '--json', '--interval', '100'])).stdout)[0].total.restarts as number;
      expect(await restarts()).toBe(0);
      for (const w of ['0', '1']) expect((await lab.cli(A, ['debug', 'crash-worker', w])).code).toBe(0);
      const until = Date.now() + 10_000;
      while ((await restarts()) < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      expect(await restarts()).toBe(2);
      expect((await lab.topo.exec(a, ['ping', '-c', '5', '-i', '0.01', '-W', '2', '-q', b.address])).stdout).toMatch(/5 received/);
    } finally {
      await lab.destroy();
    }
  }, 60_000);
});
