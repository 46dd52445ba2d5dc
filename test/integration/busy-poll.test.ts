/**
 * `userfan up --busy-poll US` (root, namespace lab): after sparse traffic a worker looks again for US µs
 * before it sleeps, and takes a packet that comes meanwhile without sleeping; `stats`, `show` and the
 * metrics count both. With 0 it never does. Bad values are refused before anything is made. Every lab
 * is destroyed in `finally`. (What it does to latency is measured by bench/latency.ts, not asserted.)
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { DEFAULT_BUSY_POLL_US } from '../../src/dataplane/busy-poll.js';
import type { Host } from '../../src/lab/topology.js';
import { CLI, createUserfanLab, type UserfanLab } from '../../src/lab/userfan-lab.js';

const stats = async (lab: UserfanLab, h: Host) => JSON.parse((await lab.cli(h, ['stats', '--json', '--interval', '100'])).stdout)[0];

/** 20 echoes 50 ms apart, container a → container b: sparse traffic. Returns how many were answered. */
async function sparseEchoes(lab: UserfanLab): Promise<number> {
  const [[a], [b]] = lab.containers;
  const r = await lab.topo.exec(a, ['ping', '-c', '20', '-i', '0.05', '-W', '2', b.address], { allowFail: true });
  return Number(/(\d+) received/.exec(r.stdout)?.[1] ?? 0);
}

describe('up --busy-poll', () => {
  it('after sparse traffic a worker looks again before sleeping, and takes what comes meanwhile without sleeping; stats, show and metrics count it', async () => {
    const lab = await createUserfanLab({ workers: 1, upArgs: ['--busy-poll', '5000', '--metrics', '127.0.0.1:9467'] });
    try {
      const [A, B] = lab.hosts;
      const [[a], [b]] = lab.containers;
      for (const h of [A, B]) expect((await lab.show(h))[0].busyPollUs).toBe(5000);
      expect(await sparseEchoes(lab)).toBe(20);
      // Each echo request comes after a 50 ms quiet spell: after it, A's worker looks again before sleeping.
      const s0 = await stats(lab, A);
      expect(s0.busyPollUs).toBe(5000);
      expect(s0.total.busyPolls, JSON.stringify(s0.total)).toBeGreaterThanOrEqual(15);
      // Pairs of UDP datagrams, 2 ms apart, 50 ms between pairs: the second of each comes while A's worker
      // is still looking (up to 5 ms) after sending the first, and is taken without a sleep. (It stops
      // looking early when another thread wants its CPU, as other tests' may: so not every pair.)
      const pairs = 40;
      const send = `const s=require('dgram').createSocket('udp4');let i=0;const go=()=>{s.send('first',9,'${b.address}');setTimeout(()=>{s.send('second',9,'${b.address}');if(++i<${pairs})setTimeout(go,50);else setTimeout(()=>s.close(),20)},2)};go();`;
      await lab.topo.exec(a, ['node', '-e', send]);
      const s1 = await stats(lab, A);
      const polls = s1.total.busyPolls - s0.total.busyPolls;
      const hits = s1.total.busyPollHits - s0.total.busyPollHits;
      expect(hits, `${hits} hits in ${polls} busy polls`).toBeGreaterThanOrEqual(pairs / 8);
      expect(hits).toBeLessThanOrEqual(polls);
      const text = (await lab.cli(A, ['stats'])).stdout;
      expect(text).toMatch(/busy poll 5000 µs: \d+ waits looked again before sleeping, \d+ of them caught a packet/);
      const m = await lab.topo.exec(A, ['node', '-e', "fetch('http://127.0.0.1:9467/metrics').then(r=>r.text()).then(t=>process.stdout.write(t))"]);
      const metric = /^userfan_busy_poll_hits_total\{worker="0"\} (\d+)/m.exec(m.stdout);
      expect(metric, m.stdout.split('\n').filter((l) => l.includes('busy')).join('\n')).not.toBe(null);
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

  it('refuses what is not a whole number of µs from 0 to 10000, naming the option, before anything is made', () => {
    for (const bad of ['10001', 'abc', '1.5']) {
      const r = spawnSync('node', [CLI, 'up', '-o', '250.0.0.0/8', '-u', '198.18.0.28/16', '--busy-poll', bad], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toContain(`--busy-poll "${bad}": must be a whole number from 0 to 10000`);
    }
  });
});
