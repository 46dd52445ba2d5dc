/**
 * `userfan up --busy-poll US` (root, namespace lab): after sparse traffic a worker looks again for US µs
 * before it sleeps, and takes a packet that comes meanwhile without sleeping; `stats`, `show` and the
 * metrics count both. With 0 it never does. Bad values are refused before anything is made. Every lab
 * is destroyed in `finally`. (What it does to latency, and how often a look catches a packet, are
 * figures for bench/latency.ts, not asserted.)
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_BUSY_POLL_US } from '../../src/dataplane/busy-poll.js';
import { Lab } from '../../src/lab/netns.js';
import { CLI, createUserfanLab, type UserfanLab } from '../../src/lab/userfan-lab.js';
import { metrics, stats } from '../helpers/userfan.js';
import { waitForValue } from '../helpers/wait.js';

/** `count` echoes 50 ms apart, container a → container b: sparse traffic. Returns how many were answered. */
async function sparseEchoes(lab: UserfanLab, count = 20): Promise<number> {
  const [[a], [b]] = lab.containers;
  const r = await lab.topo.exec(a, ['ping', '-c', String(count), '-i', '0.05', '-W', '2', b.address], { allowFail: true });
  return Number(/(\d+) received/.exec(r.stdout)?.[1] ?? 0);
}

describe('up --busy-poll', () => {
  it('after sparse traffic a worker looks again before sleeping, and takes what comes meanwhile without sleeping; stats, show and metrics count it', async () => {
    const lab = await createUserfanLab({ workers: 1, upArgs: ['--busy-poll', '5000', '--metrics', '127.0.0.1:9467'] });
    try {
      const [A, B] = lab.hosts;
      for (const h of [A, B]) expect((await lab.show(h))[0].busyPollUs).toBe(5000);
      expect(await sparseEchoes(lab)).toBe(20);
      // Each echo request comes after a 50 ms quiet spell: after it, A's worker looks again before sleeping.
      const s0 = await stats(lab, A);
      expect(s0.busyPollUs).toBe(5000);
      expect(s0.total.busyPolls, JSON.stringify(s0.total)).toBeGreaterThanOrEqual(15);
      // What it looks for is the reply: it comes back through B while A's worker is still looking (up to
      // 5 ms; the round trip here is a fraction of a millisecond) and is taken without a sleep. The look stops
      // early when another thread wants its CPU, as other tests' may: so more sparse echoes until one
      // is caught (a deadline, not a rate; how many are caught is a figure for the bench).
      const s1 = await waitForValue(
        'a busy poll to catch an echo reply',
        async () => {
          expect(await sparseEchoes(lab, 10)).toBe(10);
          return stats(lab, A);
        },
        (s) => s.total.busyPollHits > 0,
        { timeoutMs: 60_000, intervalMs: 0 },
      );
      expect(s1.total.busyPollHits).toBeLessThanOrEqual(s1.total.busyPolls);
      const text = (await lab.cli(A, ['stats'])).stdout;
      expect(text).toMatch(/busy poll 5000 µs: \d+ waits looked again before sleeping, \d+ of them caught a packet/);
      const m = await metrics(lab.topo, A, 9467);
      const metric = /^userfan_busy_poll_hits_total\{worker="0"\} (\d+)/m.exec(m);
      expect(metric, m.split('\n').filter((l) => l.includes('busy')).join('\n')).not.toBe(null);
      expect(Number(metric![1])).toBeGreaterThanOrEqual(s1.total.busyPollHits);
    } finally {
      await lab.destroy();
    }
  });

  it('with 0 a worker sleeps as soon as it runs out of packets: no busy polls, and stats has no busy poll line', async () => {
    const lab = await createUserfanLab({ workers: 1, upArgs: ['--busy-poll', '0'] });
    try {
      const [A, B] = lab.hosts;
      expect(await sparseEchoes(lab)).toBe(20);
      for (const h of [A, B]) {
        expect((await lab.show(h))[0].busyPollUs).toBe(0);
        const s = await stats(lab, h);
        expect(s.total.rxPackets).toBeGreaterThanOrEqual(20);
        expect(s.total.busyPolls).toBe(0);
        expect((await lab.cli(h, ['stats'])).stdout).not.toMatch(/busy poll/);
      }
    } finally {
      await lab.destroy();
    }
  });

  it(`is on by default (${DEFAULT_BUSY_POLL_US} µs), and the ready line says so`, async () => {
    const lab = await createUserfanLab({ workers: 1 });
    try {
      const [A] = lab.hosts;
      expect((await lab.show(A))[0].busyPollUs).toBe(DEFAULT_BUSY_POLL_US);
      const ready = lab.daemons[0].process.lines.map((l) => l.line).find((l) => l.includes('"event":"ready"'));
      expect(JSON.parse(ready!).busyPollUs).toBe(DEFAULT_BUSY_POLL_US);
    } finally {
      await lab.destroy();
    }
  });

  it('refuses what is not a whole number of µs from 0 to 10000, naming the option, before anything is made', async () => {
    // In a namespace of the test's own, with the underlay address there: were the value not refused first,
    // up would make its devices in it.
    const lab = await Lab.create();
    try {
      const ns = await lab.addNamespace('bp');
      const dev = lab.ifName('u');
      await lab.addVeth({ ns, name: dev }, { ns: await lab.addNamespace('peer'), name: dev });
      await lab.exec(ns, ['ip', 'addr', 'add', '198.18.0.28/16', 'dev', dev]);
      const links = async () => (await lab.exec(ns, ['ip', '-o', 'link', 'show'])).stdout;
      const before = await links();
      for (const bad of ['10001', 'abc', '1.5']) {
        const r = await lab.exec(ns, ['node', CLI, 'up', '-o', '250.0.0.0/8', '-u', '198.18.0.28/16', '--busy-poll', bad], { allowFail: true, timeoutMs: 20_000 });
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr.trim().split('\n')).toEqual([expect.stringContaining(`--busy-poll "${bad}": must be a whole number from 0 to 10000`)]);
        expect(await links()).toBe(before);
        expect(JSON.parse((await lab.exec(ns, ['node', CLI, 'show', '--json'])).stdout)).toEqual([]);
      }
    } finally {
      await lab.destroy();
    }
  });
});
