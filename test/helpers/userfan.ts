/**
 * What the integration tests ask a running userfan, written once: `stats --json`, the Prometheus endpoint,
 * and the three-host lab with a hostile host on the underlay (hostile.test.ts, observe.test.ts).
 */
import { dist } from '../../src/lab/paths.js';
import { createFanTopology, type FanTopology, type Host, type Target } from '../../src/lab/topology.js';
import { startDaemon, UserfanLab, type Daemon } from '../../src/lab/userfan-lab.js';

/** Packet counters of a worker or of all of them (the fields the tests read; the rest passes through). */
export interface Counters {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  restarts: number;
  [key: string]: any;
}

/** One fan's row of `userfan stats --json` (the fields the tests read; the rest passes through). */
export interface StatsRow {
  pid: number;
  busyPollUs: number;
  txGso?: string | null;
  total: Counters;
  perWorker: Counters[];
  dropsAll: Record<string, number>;
  [key: string]: any;
}

/** `userfan stats --json` on a host: its first fan's row. Throws with stderr when the command fails. */
export async function stats(lab: UserfanLab, host: Host): Promise<StatsRow> {
  const r = await lab.cli(host, ['stats', '--json', '--interval', '100']);
  if (r.code !== 0) throw new Error(`userfan stats on ${host.name} exited ${r.code}: ${r.stderr.trim()}`);
  const rows = JSON.parse(r.stdout) as StatsRow[];
  if (!rows[0]) throw new Error(`userfan stats on ${host.name} lists no fan`);
  return rows[0];
}

/** The text of a daemon's Prometheus endpoint, fetched from inside the host's namespace. */
export async function metrics(topo: FanTopology, host: Target, port: number): Promise<string> {
  const js = `fetch('http://127.0.0.1:${port}/metrics').then(r=>r.text()).then(t=>process.stdout.write(t))`;
  return (await topo.exec(host, ['node', '-e', js])).stdout;
}

/** The sum of every series of one metric (all its label sets) in an exposition text. */
export function metricSum(text: string, name: string): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

/**
 * Reverse-path filtering off on a host (all and its underlay interface): the kernel would otherwise drop
 * packets whose outer source is off the underlay before they reach userfan's own checks.
 */
export async function rpFilterOff(topo: FanTopology, host: Host): Promise<void> {
  await topo.exec(host, ['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0', `net.ipv4.conf.${host.underlayIf}.rp_filter=0`]);
}

/**
 * Three hosts on one underlay: A 198.18.0.28 and B 198.18.0.27 run userfan (with `a` and `b` as extra `up`
 * arguments) with one container each; H 198.18.0.99 runs nothing and plays the hostile host. Destroy it with
 * `lab.destroy()`.
 */
export async function hostileLab(opts: { a: string[]; b: string[]; onLog?: (host: string, line: string) => void }): Promise<UserfanLab> {
  const topo = await createFanTopology({ specs: [{ name: 'A', underlay: '198.18.0.28' }, { name: 'B', underlay: '198.18.0.27' }, { name: 'H', underlay: '198.18.0.99' }] });
  const daemons: Daemon[] = [];
  try {
    const [A, B] = topo.hosts;
    daemons.push(await startDaemon(topo, A, ['-o', '250.0.0.0/8', '-u', A.underlayCidr, ...opts.a], opts.onLog));
    daemons.push(await startDaemon(topo, B, ['-o', '250.0.0.0/8', '-u', B.underlayCidr, ...opts.b], opts.onLog));
    return new UserfanLab(topo, daemons, [[await topo.addContainer(A)], [await topo.addContainer(B)]]);
  } catch (e) {
    await Promise.all(daemons.map((d) => d.process.stop(5000)));
    await topo.destroy();
    throw e;
  }
}

/** What src/lab/hostile.ts reports: packets sent per kind, and the drop counts they must produce. */
export interface HostileReport {
  sent: Record<string, number>;
  expect: Record<string, number>;
  refused: number;
  seconds: number;
}

/**
 * From `from` (the hostile host), `count` bad IP-in-IP packets at `victim`'s underlay address, aimed at
 * `container` (UDP port 9999 there), paced at `pps`: src/lab/hostile.ts, run to its end.
 */
export async function sendHostile(lab: UserfanLab, from: Host, victim: Host, container: { address: string }, count: number, pps: number): Promise<HostileReport> {
  const argv = ['node', dist('src/lab/hostile'), '--self', from.underlay, '--victim', victim.underlay, '--container', container.address, '--port', '9999', '--count', String(count), '--pps', String(pps)];
  const r = await lab.topo.exec(from, argv, { timeoutMs: 60_000 });
  return JSON.parse(r.stdout) as HostileReport;
}

/** Counter growth per key between two snapshots (missing keys count as 0). */
export function grown(before: Record<string, number> | undefined, after: Record<string, number> | undefined, keys: string[]): Record<string, number> {
  return Object.fromEntries(keys.map((k) => [k, (after?.[k] ?? 0) - (before?.[k] ?? 0)]));
}
