/**
 * `up --keep-bridge`: restarting userfan does not cut its containers off (root, namespace lab). For each fan
 * type, two hosts with a container each on userfan's own bridge:
 * - SIGTERM: the TUN/TAP, routes into it and the NAT table go; the bridge stays with its address and the
 *   container's port; `up` again adopts it and the same container reaches the other host's, never re-attached;
 * - `kill -9` then `userfan down` (what the systemd unit's ExecStopPost does after a crash) leaves the bridge
 *   so too, and `up` adopts it again;
 * - DHCP's leases stay with a kept bridge (the next dnsmasq must not hand a container's address out again).
 * Without the option the bridge goes at exit (test/integration/vxlan-host.test.ts and others check that).
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Container } from '../../src/lab/topology.js';
import { CLI, createUserfanLab, startDaemon, type UserfanLab } from '../../src/lab/userfan-lab.js';
import { hostState } from '../helpers/host-state.js';

interface Case {
  name: string;
  args: string[];
  /** Host A's bridge. */
  bridge: string;
  prefixLen: number;
  /** The TUN (IP-in-IP) or TAP (VXLAN) device userfan makes on host A. */
  dev: string;
}

const CASES: Case[] = [
  { name: 'IP-in-IP', args: [], bridge: 'fan-250-0-28', prefixLen: 24, dev: 'uf-250-0-28' },
  { name: 'VXLAN', args: ['--type', 'vxlan'], bridge: 'fan-250', prefixLen: 8, dev: 'uf-250' },
];

describe.each(CASES)('up --keep-bridge, $name', (c) => {
  let lab: UserfanLab;
  let a: Container;
  let b: Container;
  const upArgs = ['--keep-bridge', '--dhcp', ...c.args];

  const runDirs: string[] = [];

  beforeAll(async () => {
    // IP-in-IP: each host's slice bridge (the lab's default); VXLAN: one bridge name on every host, the overlay's prefix.
    lab = await createUserfanLab({ upArgs, ...(c.name === 'VXLAN' ? { container: { bridge: c.bridge, prefixLen: c.prefixLen } } : {}) });
    [[a], [b]] = lab.containers;
    // Each host's state directory (/run/userfan/net-<inode>), where the kept leases outlive the daemons.
    for (const h of lab.hosts) runDirs.push((await lab.topo.exec(h, ['sh', '-c', 'echo /run/userfan/net-$(readlink /proc/self/ns/net | tr -dc 0-9)'])).stdout.trim());
  }, 60_000);
  afterAll(async () => {
    await lab?.destroy();
    for (const d of runDirs) rmSync(d, { recursive: true, force: true });
  });

  /** A's bridge: whether it exists, its addresses and its ports. */
  async function bridgeOnA(): Promise<{ exists: boolean; addresses: string[]; ports: string[] }> {
    const A = lab.hosts[0];
    const addr = await lab.topo.exec(A, ['ip', '-j', '-4', 'addr', 'show', 'dev', c.bridge], { allowFail: true });
    if (addr.code !== 0) return { exists: false, addresses: [], ports: [] };
    const [l] = JSON.parse(addr.stdout) as { addr_info: { local: string; prefixlen: number }[] }[];
    const ports = JSON.parse((await lab.topo.exec(A, ['ip', '-j', 'link', 'show', 'master', c.bridge])).stdout || '[]') as { ifname: string }[];
    return { exists: true, addresses: l.addr_info.map((x) => `${x.local}/${x.prefixlen}`), ports: ports.map((p) => p.ifname).sort() };
  }

  /** Restarts A's daemon (the one that stopped) with the same options; returns `show --json` for A. */
  async function restartA(): Promise<Record<string, any>[]> {
    const A = lab.hosts[0];
    lab.daemons[0] = await startDaemon(lab.topo, A, ['-o', A.slice.overlay, '-u', A.underlayCidr, '--workers', '1', ...upArgs]);
    return lab.show(A);
  }

  it('the container on A reaches B\'s, and show says the bridge is kept', async () => {
    expect((await lab.topo.ping(a, b.address, { count: 2 })).received).toBe(2);
    const [row] = await lab.show(lab.hosts[0]);
    expect(row).toMatchObject({ bridge: c.bridge, kept: true, adopted: false });
    const text = (await lab.cli(lab.hosts[0], ['show'])).stdout;
    expect(text).toContain(`bridge ${c.bridge} (kept): stays at down with its containers`);
  });

  it('SIGTERM leaves the bridge with its address and the container\'s port; up adopts it and the container works again', async () => {
    const A = lab.hosts[0];
    const before = await bridgeOnA();
    // The container's port, and with VXLAN the TAP (IP-in-IP's TUN is no port: routes lead into it).
    expect(before.ports).toHaveLength(c.name === 'VXLAN' ? 2 : 1);
    expect(before.ports.includes(c.dev)).toBe(c.name === 'VXLAN');
    const d = lab.daemons[0];
    await d.process.stop(5000);
    expect(d.process.lines.map((l) => l.line).find((l) => l.includes('"event":"fan-down"'))).toContain(`"bridgeLeft":"kept"`);
    const st = await hostState(lab.topo, A);
    expect(st.devices, 'the TUN/TAP goes, the bridge stays').toEqual([c.bridge]);
    expect(st.nft).toEqual([]);
    expect(st.show).toEqual([]);
    expect(st.userfan).toEqual([]); // the daemon and its dnsmasq are gone
    const after = await bridgeOnA();
    expect(after.addresses).toEqual(before.addresses);
    expect(after.ports).toEqual(before.ports.filter((p) => p !== c.dev));
    expect(st.runDir, 'the leases file stays with the kept bridge').toMatch(new RegExp(`${c.bridge}\\.leases`));

    const [row] = await restartA();
    expect(row).toMatchObject({ bridge: c.bridge, adopted: true, state: 'up' });
    expect((await bridgeOnA()).ports).toEqual(before.ports); // the same container port, and the TAP again
    expect((await lab.topo.ping(a, b.address, { count: 2 })).received).toBe(2);
    expect((await lab.topo.ping(b, a.address, { count: 2 })).received).toBe(2);
  });

  it('kill -9 then userfan down (systemd\'s ExecStopPost) leaves the bridge too, and up adopts it again', async () => {
    const A = lab.hosts[0];
    const before = await bridgeOnA();
    lab.daemons[0].process.kill('SIGKILL');
    await lab.daemons[0].process.wait(5000).catch(() => {});
    const r = await lab.topo.exec(A, ['node', CLI, 'down', '-e']);
    expect(r.stdout).toMatch(/down \(cleaned-after-crash/);
    const st = await hostState(lab.topo, A);
    expect(st.devices).toEqual([c.bridge]);
    expect(st.routes.filter((x) => x.includes(c.dev))).toEqual([]);
    expect((await bridgeOnA()).addresses).toEqual(before.addresses);
    await restartA();
    expect((await lab.topo.ping(a, b.address, { count: 2 })).received).toBe(2);
  });
});
