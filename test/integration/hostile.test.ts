/**
 * Holding up under hostile input and faults, in the namespace lab (root):
 * - while a 64 MB transfer runs A → B, a hostile host on the underlay sends 200,000 malformed and
 *   spoofed IP-in-IP packets to B: the transfer is byte-exact, no worker dies, B's memory stays bounded,
 *   every hostile packet is accounted for by a drop counter (or the kernel's socket-buffer drops), and a
 *   listener in B's container receives none of them;
 * - a worker killed mid-transfer is replaced (the daemon says so, the restart is counted) and the transfer
 *   completes byte-exact; how long a replacement takes is a figure for bench/waits.ts;
 * - the TUN or the bridge deleted from under the daemon: it says so and exits non-zero, without hanging.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFanTopology, type FanTopology } from '../../src/lab/topology.js';
import { CLI, startDaemon, UserfanLab, createUserfanLab } from '../../src/lab/userfan-lab.js';
import { udpCounter } from '../helpers/udp.js';
import { grown, hostileLab, rpFilterOff, sendHostile, stats } from '../helpers/userfan.js';
import { waitFor, waitForValue } from '../helpers/wait.js';

const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

/** Kernel drops on protocol-4 raw sockets in a namespace (the last column of /proc/net/raw). */
async function rawDrops(topo: FanTopology, ns: string): Promise<number> {
  const t = (await topo.exec(ns, ['cat', '/proc/net/raw'])).stdout.trim().split('\n').slice(1);
  return t.filter((l) => l.trim().split(/\s+/)[3] === '0004' || l.includes(':0004 ')).reduce((s, l) => s + Number(l.trim().split(/\s+/).pop()), 0);
}

describe('a hostile host on the underlay', () => {
  let lab: UserfanLab;
  beforeAll(async () => {
    lab = await hostileLab({ a: ['--workers', '1'], b: ['--workers', '2'] });
  });
  afterAll(async () => lab?.destroy());

  it('changes nothing for a 64 MB transfer, and every hostile packet is dropped and counted', async () => {
    const [, B, H] = lab.hosts;
    const [[a], [b]] = lab.containers;
    // B takes packets from outside the underlay to its raw sockets (the kernel's reverse-path filter would
    // otherwise drop them first and they would not reach userfan's checks at all).
    await rpFilterOff(lab.topo, B);
    const bPid = lab.daemons[1].process.pid!;
    const rows = async () => (await lab.show(B))[0];
    const before = await rows();
    const rawBefore = await rawDrops(lab.topo, B.ns);
    const rssBefore = rssKiB(bPid);
    const listener = await udpCounter(lab.topo, b, 9999);

    const transfer = lab.transfer(a, b, 64 << 20, { deadlineMs: 120_000 });
    const [t, sent] = await Promise.all([transfer, sendHostile(lab, H, B, b, 200_000, 25_000)]);
    expect(t.match, JSON.stringify(t)).toBe(true);

    // Account: every hostile packet is in a drop counter of B's userfan or in the kernel's socket drops.
    // The counters are read after the last hostile packet has been sent: wait until the workers have
    // counted them all (or the deadline passes, and the asserts below say what is missing).
    const total = Object.values(sent.sent).reduce((x, y) => x + y, 0);
    expect(total).toBe(200_000);
    const reasons = Object.keys(sent.expect);
    const account = async () => {
      const after = await rows();
      const byReason = grown(before.dropsByReason, after.dropsByReason, reasons);
      const accounted = Object.values(byReason).reduce((x, y) => x + y, 0);
      return { after, byReason, accounted, kernel: (await rawDrops(lab.topo, B.ns)) - rawBefore };
    };
    const { after, byReason, accounted, kernel } = await waitForValue('every hostile packet counted', account, (v) => v.accounted + v.kernel >= total).catch(account);
    console.log(`hostile: ${total} sent; userfan drops ${accounted} ${JSON.stringify(byReason)}; kernel socket drops ${kernel}; RSS ${rssBefore} -> ${rssKiB(bPid)} KiB`);
    for (const [reason, n] of Object.entries(sent.expect)) expect(byReason[reason]).toBeLessThanOrEqual(n);
    expect(accounted + kernel).toBe(total);
    expect(accounted).toBeGreaterThan(total * 0.9);

    // No worker died, the daemon is the same process, memory is bounded.
    expect(after.pid).toBe(bPid);
    expect((await stats(lab, B)).perWorker.map((w) => w.restarts)).toEqual([0, 0]);
    expect(rssKiB(bPid) - rssBefore).toBeLessThan(64 * 1024);

    // Nothing spoofed reached the container.
    expect(await listener.count()).toBe(0);
  });
});

describe('faults', () => {
  let lab: UserfanLab;
  const logs: string[] = [];
  beforeAll(async () => {
    lab = await createUserfanLab({ workers: 2, onLog: (host, line) => logs.push(`${host} ${line}`) });
  });
  afterAll(async () => lab?.destroy());

  it('replaces a worker killed mid-transfer; the transfer completes byte-exact', async () => {
    const [A, B] = lab.hosts;
    const [[a], [b]] = lab.containers;
    // Large enough to still be flowing when both crash commands have run (offloads move ~4 Gbit/s here).
    let done = false;
    const transfer = lab.transfer(a, b, 1024 << 20, { deadlineMs: 120_000 }).finally(() => (done = true));
    // Kill worker 0 on both hosts once the transfer is flowing.
    await waitFor('the transfer to flow', async () => ((await lab.show(A))[0].txPackets ?? 0) >= 2000, { intervalMs: 20 });
    const codes = await Promise.all([A, B].map(async (h) => (await lab.cli(h, ['debug', 'crash-worker', '0'])).code));
    expect(codes).toEqual([0, 0]);
    expect(done, 'the transfer was still running when the workers were killed').toBe(false);
    const t = await transfer;
    expect(t.match, JSON.stringify(t)).toBe(true);
    // Each daemon logs the replacement once its new worker runs; the log line may trail the transfer.
    const replacedLogs = () => logs.filter((l) => l.includes('"event":"worker-replaced"'));
    await waitFor('both daemons to log the replacement', () => replacedLogs().length >= 2);
    const replaced = replacedLogs().map((l) => ({ host: l.split(' ')[0], ...JSON.parse(l.slice(l.indexOf('{'))) }));
    expect(replaced.map((r) => [r.host, r.worker]).sort()).toEqual([['A', 0], ['B', 0]]);
    console.log(`worker replacement: ${replaced.map((r) => `${r.host} ${r.ms} ms`).join(', ')} (a figure, not asserted)`);
    for (const h of [A, B]) expect((await stats(lab, h)).perWorker.map((w) => w.restarts)).toEqual([1, 0]);
  });
});

describe('devices deleted from under the daemon', () => {
  let topo: FanTopology;
  beforeAll(async () => {
    topo = await createFanTopology();
  });
  afterAll(async () => topo?.destroy());

  for (const which of ['TUN', 'bridge'] as const) {
    it(`${which}: says what happened and exits non-zero, without hanging`, async () => {
      const [A] = topo.hosts;
      const d = await startDaemon(topo, A, ['-o', '250.0.0.0/8', '-u', A.underlayCidr, '--workers', '2']);
      const dev = which === 'TUN' ? 'uf-250-0-28' : 'fan-250-0-28';
      await topo.exec(A, ['ip', 'link', 'del', 'dev', dev]);
      // Deadlines, not speeds: a daemon that hung would be killed by wait() and report a signal, not a code.
      const line = await d.process.waitForLine(/"event":"fatal"/, 10_000);
      expect(line).toContain(which === 'TUN' ? 'uf-250-0-28' : 'fan-250-0-28 was deleted');
      const code = await d.process.wait(10_000);
      expect(d.process.exitSignal, 'it exited by itself').toBe(null);
      expect(code).not.toBe(0);
      // It cleaned up the rest: nothing of userfan remains, and up works again.
      expect((await topo.exec(A, ['ip', '-o', 'link', 'show'])).stdout).not.toMatch(/uf-250|fan-250/);
      const again = await startDaemon(topo, A, ['-o', '250.0.0.0/8', '-u', A.underlayCidr, '--workers', '1']);
      await again.process.stop(5000);
    });
  }
});

describe('wrong configuration', () => {
  let topo: FanTopology;
  beforeAll(async () => {
    topo = await createFanTopology();
  });
  afterAll(async () => topo?.destroy());

  const cases: [string, string[], RegExp, string[]?][] = [
    ['a bad CIDR', ['-o', '250.0.0.0/33', '-u', 'UNDERLAY'], /^userfan up: overlay "250.0.0.0\/33": prefix length 33 is out of range/],
    ['a slice too small', ['-o', '250.0.0.0/20', '-u', 'UNDERLAY'], /each host's slice would be \/36/],
    ['an underlay address on no interface', ['-o', '250.0.0.0/8', '-u', '198.18.0.77/16'], /^userfan up: underlay "198.18.0.77\/16": 198.18.0.77 is not an address of any interface on this host/],
    ['an interface that does not exist', ['-o', '250.0.0.0/8', '-u', 'eth9/16'], /^userfan up: underlay "eth9\/16": interface eth9 has no IPv4 address/],
    ['overlapping fans in one config', ['-a', '--config', 'CONF'], /^userfan up: \/tmp\/\w+-overlap.conf line 2 "250.1.0.0\/16 198.18.7.28\/24": overlay "250.1.0.0\/16": overlaps the overlay of another fan/],
    ['no CAP_NET_ADMIN', ['-o', '250.0.0.0/8', '-u', 'UNDERLAY'], /needs CAP_NET_ADMIN .*run as root/, ['setpriv', '--inh-caps=-all', '--bounding-set=-net_admin', '--']],
  ];
  for (const [what, args, message, prefix] of cases) {
    it(`${what}: exit 2, one line, nothing created`, async () => {
      const [A] = topo.hosts;
      const conf = `/tmp/${topo.lab.prefix}-overlap.conf`;
      await topo.exec(undefined, ['sh', '-c', `printf '250.0.0.0/8 ${A.underlayCidr}\\n250.1.0.0/16 198.18.7.28/24\\n' > ${conf}`]);
      const before = (await topo.exec(A, ['ip', '-o', 'link', 'show'])).stdout;
      const argv = args.map((x) => (x === 'UNDERLAY' ? A.underlayCidr : x === 'CONF' ? conf : x));
      const r = await topo.exec(A, [...(prefix ?? []), 'node', CLI, 'up', ...argv], { allowFail: true });
      await topo.exec(undefined, ['rm', '-f', conf]);
      expect(r.code, r.stderr + r.stdout).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
      expect((await topo.exec(A, ['ip', '-o', 'link', 'show'])).stdout).toBe(before);
      expect(JSON.parse((await topo.exec(A, ['node', CLI, 'show', '--json'])).stdout)).toEqual([]);
    });
  }
});
