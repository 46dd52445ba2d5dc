/**
 * What a host namespace of the lab holds that `userfan up` could have made, for tests that check a
 * teardown left nothing behind or that a refused command made nothing at all.
 */
import { expect } from 'vitest';
import type { FanTopology, Target } from '../../src/lab/topology.js';
import { CLI } from '../../src/lab/userfan-lab.js';

export interface HostState {
  /** Every interface, as `ip -o link` names it. */
  links: string[];
  /** userfan's devices among them (uf-…, fan-…). */
  devices: string[];
  /** Every IPv4 address, with its device. */
  addresses: string[];
  /** Routes into the overlay (250.…, 251.…, 252.…). */
  routes: string[];
  /** nftables tables that are userfan's. */
  nft: string[];
  ipForward: string;
  /** `userfan show --json` in that namespace. */
  show: unknown[];
  /** userfan daemons and their dnsmasq running in that namespace. */
  userfan: string[];
  /** The namespace's state directory and what is in it (it goes with the last daemon). */
  runDir: string;
}

/** One shell in the namespace prints every section, each after a `## name` line. */
const SNAPSHOT = [
  'echo "## links"; ip -o link show',
  'echo "## addresses"; ip -o -4 addr show',
  'echo "## routes"; ip route show',
  'echo "## nft"; nft list tables',
  'echo "## forward"; sysctl -n net.ipv4.ip_forward',
  'echo "## procs"; ip netns pids "$(ip netns identify $$)" | xargs -r ps -o comm= -p',
  'echo "## run"; d=/run/userfan/net-$(readlink /proc/self/ns/net | tr -dc 0-9); if [ -d "$d" ]; then echo "$d:"; ls -A "$d"; fi',
].join('; ');

export async function hostState(topo: FanTopology, h: Target): Promise<HostState> {
  const text = (await topo.exec(h, ['sh', '-c', SNAPSHOT])).stdout;
  const section = (name: string) => (text.split(`## ${name}\n`)[1] ?? '').split('\n## ')[0].split('\n').filter(Boolean);
  const links = section('links').map((l) => l.split(':')[1].trim().replace(/@.*$/, ''));
  return {
    links,
    devices: links.filter((l) => /^(uf-|fan-)/.test(l)),
    addresses: section('addresses').map((l) => l.split(/\s+/).slice(1, 4).join(' ')),
    routes: section('routes').filter((l) => /^25[0-2]\./.test(l)),
    nft: section('nft').filter((l) => l.includes('userfan')),
    ipForward: section('forward').join(''),
    show: JSON.parse((await topo.exec(h, ['node', CLI, 'show', '--json'])).stdout),
    // The shell that takes the snapshot is in the namespace too: only userfan's processes count.
    userfan: section('procs').filter((l) => /node|dnsmasq/.test(l)),
    runDir: section('run').join('\n'),
  };
}

export interface Refusal {
  args: string[];
  /** The one line expected on stderr: exactly this string, or matching this pattern. */
  message: RegExp | string;
  /** Run before `node CLI`, e.g. setpriv or taskset. */
  prefix?: string[];
}

/**
 * Runs each `userfan ARGS` (after its prefix) in host h and expects what a refused command gives: exit 2,
 * one line on stderr matching its message, nothing on stdout; and the namespace, after all of them,
 * exactly as before (one snapshot each side, so a long list stays quick).
 */
export async function expectAllRefused(topo: FanTopology, h: Target, refusals: Refusal[]): Promise<void> {
  const before = await hostState(topo, h);
  for (const { args, message, prefix = [] } of refusals) {
    const r = await topo.exec(h, [...prefix, 'node', CLI, ...args], { allowFail: true, timeoutMs: 30_000 });
    const what = `userfan ${args.join(' ')}`;
    expect(r.code, `${what}: ${r.stderr}${r.stdout}`).toBe(2);
    expect(r.stderr.trim().split('\n'), what).toHaveLength(1);
    if (typeof message === 'string') expect(r.stderr.trim(), what).toBe(message);
    else expect(r.stderr.trim(), what).toMatch(message);
    expect(r.stdout, what).toBe('');
  }
  expect(await hostState(topo, h), `the namespace changed after ${refusals.map((x) => x.args.join(' ')).join('; ')}`).toEqual(before);
}

/** expectAllRefused for one command. */
export function expectRefused(topo: FanTopology, h: Target, args: string[], message: RegExp | string, prefix: string[] = []): Promise<void> {
  return expectAllRefused(topo, h, [{ args, message, prefix }]);
}
