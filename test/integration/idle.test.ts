/**
 * An idle daemon sleeps (root, namespace lab). Its idle workers used to wake every 20 ms to look at their
 * stop flag: 50 wake-ups a second each, which on this kind of VM pulled the echo path of the busy worker
 * apart (echoes 124 µs with two workers per host against 69 with one; README, Performance: latency).
 * Now a worker sleeps up to the addon's cap (WAIT_MAX_MS, 250 ms) and the pool wakes it through an eventfd
 * when it must stop or crash. Seen here from /proc: once traffic is over, every worker thread is blocked in
 * poll() with that cap as its timeout (/proc/PID/task/TID/syscall), not a short one and not a busy look.
 * (How many times a second the daemon wakes is a figure, measured by bench/waits.ts.) Then an idle worker
 * is crashed (fault injection, which goes through the same wake-up): it is replaced and the host carries
 * traffic again. (Stops go through it too, in every lab's teardown.)
 */
import { describe, expect, it } from 'vitest';
import { native } from '../../src/io/native.js';
import { createUserfanLab } from '../../src/lab/userfan-lab.js';
import { threads } from '../helpers/proc.js';
import { stats } from '../helpers/userfan.js';
import { waitForValue } from '../helpers/wait.js';

/** poll(2) on x86_64; its third argument is the timeout in ms. */
const SYS_POLL = 7;

/** The threads of `pid` blocked in poll() right now, with the timeout each asked for. */
function pollTimeouts(pid: number): number[] {
  if (process.arch !== 'x64') throw new Error(`this test reads x86_64 system call numbers; this is ${process.arch}`);
  return threads(pid)
    .filter((t) => t.syscall[0] === SYS_POLL)
    .map((t) => t.syscall[3]);
}

describe('an idle daemon', () => {
  it('sleeps: every idle worker is blocked in poll() for the longest wait the addon allows; the pool still wakes a worker at once', async () => {
    const workers = 2;
    const lab = await createUserfanLab({ workers });
    try {
      const [A] = lab.hosts;
      const [[a], [b]] = lab.containers;
      const pid = (await lab.show(A))[0].pid as number;
      expect((await lab.topo.exec(a, ['ping', '-c', '5', '-i', '0.01', '-q', b.address])).stdout).toMatch(/5 received/);
      // Once the last busy looks are over, both workers sleep in poll() with the cap as timeout.
      const cap = native().WAIT_MAX_MS;
      const parked = await waitForValue('both workers parked in poll()', () => pollTimeouts(pid), (t) => t.filter((timeout) => timeout === cap).length === workers);
      expect(parked.filter((timeout) => timeout === cap)).toEqual([cap, cap]);
      // Nothing else of the daemon polls with a shorter timeout (a worker waking every 20 ms would).
      expect(parked.filter((timeout) => timeout !== cap), `poll() timeouts: ${parked}`).toEqual([]);

      // Crash both of A's workers while they sleep: each is replaced, and echoes go through again.
      expect((await stats(lab, A)).total.restarts).toBe(0);
      for (const w of ['0', '1']) expect((await lab.cli(A, ['debug', 'crash-worker', w])).code).toBe(0);
      const restarts = await waitForValue('both workers replaced', async () => (await stats(lab, A)).total.restarts as number, (n) => n >= 2);
      expect(restarts).toBe(2);
      expect((await lab.topo.exec(a, ['ping', '-c', '5', '-i', '0.01', '-W', '2', '-q', b.address])).stdout).toMatch(/5 received/);
    } finally {
      await lab.destroy();
    }
  }, 60_000);
});
