/**
 * `userfan up --cpus LIST` (root, namespace lab): each worker thread runs only on its CPU of the list,
 * the daemon's other threads keep the CPUs they had, the data path still carries bytes exactly, show
 * says where the workers are pinned, and a CPU this process may not use is refused before anything is
 * created. Every lab is destroyed in `finally`.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { allowedCpus } from '../../src/control/cpus.js';
import { createUserfanLab } from '../../src/lab/userfan-lab.js';
import { createFanTopology } from '../../src/lab/topology.js';
import { expectAllRefused } from '../helpers/host-state.js';

const affinityIn = (status: string) => /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)![1];
/** This process's CPUs, as /proc writes them: what the daemons it starts inherit. */
const ownAffinity = () => affinityIn(readFileSync('/proc/self/status', 'utf8'));

/** Cpus_allowed_list of every thread of process `pid`. */
function threadAffinities(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    try {
      return [affinityIn(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))];
    } catch {
      return []; // a thread that ended meanwhile
    }
  });
}

describe('up --cpus', () => {
  it('pins each worker thread to its CPU of the list and nothing else, and still carries 8 MB byte-exact', async () => {
    const cpus = allowedCpus();
    const all = ownAffinity();
    const last = cpus.at(-1)!;
    // Two workers, one CPU in the list: both on it (worker i takes the (i mod n)-th CPU).
    const lab = await createUserfanLab({ workers: 2, upArgs: ['--cpus', String(last)] });
    try {
      const [A, B] = lab.hosts;
      const [[a], [b]] = lab.containers;
      for (const h of [A, B]) {
        const row = (await lab.show(h))[0];
        expect(row.cpus).toBe(String(last));
        const threads = threadAffinities(row.pid);
        expect(threads.filter((t) => t === String(last)).length, `threads of ${h.name}: ${threads.join(' ')}`).toBe(cpus.length > 1 ? 2 : threads.length);
        if (cpus.length > 1) expect(threads.filter((t) => t !== String(last)).every((t) => t === all), threads.join(' ')).toBe(true);
        expect((await lab.cli(h, ['show'])).stdout).toMatch(new RegExp(`\\s2 on CPU ${last}\\s`));
      }
      const ab = await lab.transfer(a, b, 8 << 20, { deadlineMs: 60_000 });
      expect(ab.match, JSON.stringify(ab)).toBe(true);
    } finally {
      await lab.destroy();
    }
  });

  it('without --cpus the workers are not pinned, and show says so', async () => {
    const lab = await createUserfanLab({ workers: 1 });
    try {
      const row = (await lab.show(lab.hosts[0]))[0];
      expect(row.cpus).toBe(null);
      expect(new Set(threadAffinities(row.pid))).toEqual(new Set([ownAffinity()]));
    } finally {
      await lab.destroy();
    }
  });

  it('refuses a CPU this process may not run on, naming the field and the CPUs it may use, before it creates anything', async () => {
    const cpus = allowedCpus();
    const outside = cpus.at(-1)! + 1;
    const topo = await createFanTopology();
    try {
      const [A] = topo.hosts;
      const up = ['up', '-o', '250.0.0.0/8', '-u', A.underlayCidr];
      await expectAllRefused(topo, A, [
        { args: [...up, '--cpus', String(outside)], message: `userfan up: --cpus "${outside}": CPU ${outside} is not among the CPUs this process may run on (${cpus[0]})`, prefix: ['taskset', '-c', String(cpus[0])] },
        { args: [...up, '--cpus', '0,'], message: /^userfan up: --cpus "0,": must be CPU numbers and ranges/ },
      ]);
    } finally {
      await topo.destroy();
    }
  });
});
