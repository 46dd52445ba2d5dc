/**
 * The VXLAN type on a host, beside what test/integration/vxlan.test.ts shows on the wire (root, namespace
 * lab):
 * - UDP of every size both ways between two userfan VXLAN hosts (the checksums a veth hands on unfinished
 *   are finished);
 * - --dhcp: a container on the fan bridge that asks with busybox udhcpc gets an address of the slice's
 *   .2–.254 with the router slice.1 and option 26 = the fan's MTU (underlay 1500 − 50 = 1450), and it works
 *   across the fan;
 * - egress NAT: a packet from a container to a stranger on the underlay (198.18.0.66, a host without
 *   userfan) arrives from the host's underlay address; from a host with --no-nat, from the container's own;
 * - teardown: SIGTERM, `down` from another shell, and `kill -9` then `down` each leave the namespace as it
 *   was (no TAP, bridge, route, nft table, dnsmasq, state, and the VXLAN port free);
 * - bad configuration refused with exit 2, one line, nothing made: the bridge's name held by another kind
 *   of device; the VXLAN port held by another userfan's VXLAN fan (its sockets share the port, so the
 *   kernel would split the datagrams between the two daemons).
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFanTopology, type Container, type FanTopology, type Host } from '../../src/lab/topology.js';
import { CLI, startDaemon, UserfanLab, type Daemon } from '../../src/lab/userfan-lab.js';
import { expectAllRefused, hostState } from '../helpers/host-state.js';
import { dhcpContainer as askDhcp, writeUdhcpcScript } from '../helpers/dhcp.js';

const PORT = 8472;
const MTU = 1450;
const BRIDGE = 'fan-250';
const STRANGER = '198.18.0.66'; // on the underlay, owns nothing, runs no userfan (LAB.md)

const vxlanArgs = (h: Host, extra: string[] = []) => ['-o', '250.0.0.0/8', '-u', h.underlayCidr, '--type', 'vxlan', ...extra];

describe('--type vxlan: --dhcp and egress NAT', () => {
  let topo: FanTopology;
  let lab: UserfanLab;
  let A: Host;
  let B: Host;
  let S: Host;
  let b: Container;
  let script: string;
  const leases: { c: Container; lease: Record<string, string> }[] = [];

  /** A container on A's fan bridge with no address, which then asks for one with busybox udhcpc. */
  const dhcpContainer = () => askDhcp(topo, A, BRIDGE, script);

  beforeAll(async () => {
    topo = await createFanTopology({ specs: [{ name: 'A', underlay: '198.18.0.28' }, { name: 'B', underlay: '198.18.0.27' }, { name: 'S', underlay: STRANGER }] });
    [A, B, S] = topo.hosts;
    script = `/tmp/${topo.prefix}-hw-udhcpc.sh`;
    writeUdhcpcScript(script, true); // print the lease, configure the container with it
    const daemons: Daemon[] = [
      await startDaemon(topo, A, vxlanArgs(A, ['--dhcp', '--workers', '1'])),
      await startDaemon(topo, B, vxlanArgs(B, ['--no-nat', '--workers', '1'])),
    ];
    lab = new UserfanLab(topo, daemons, []);
    b = await topo.addContainer(B, { bridge: BRIDGE, prefixLen: 8 });
    leases.push(await dhcpContainer(), await dhcpContainer());
  }, 90_000);
  afterAll(async () => {
    rmSync(script ?? '/nonexistent', { force: true });
    await lab?.destroy();
    if (!lab) await topo?.destroy();
  });

  it('--dhcp: leases in the slice\'s .2-.254, router slice.1, option 26 = 1450; they work across the fan', async () => {
    for (const { c, lease } of leases) {
      expect(lease, c.name).toMatchObject({ router: '250.0.28.1', mtu: String(MTU), serverid: '250.0.28.1' });
      expect(lease.ip, c.name).toMatch(/^250\.0\.28\.\d+$/);
      const last = Number(lease.ip.split('.')[3]);
      expect(last, lease.ip).toBeGreaterThanOrEqual(2);
      expect(last, lease.ip).toBeLessThanOrEqual(254);
      // The whole overlay is one segment, as the bridge's slice.1/8 says: the mask reaches B's containers.
      expect(lease.mask, c.name).toBe('8');
    }
    expect(leases[0].lease.ip).not.toBe(leases[1].lease.ip);
    for (const { c } of leases) expect((await topo.ping(c, b.address, { count: 2 })).received, `${c.address} -> ${b.address}`).toBe(2);
    // Full-size packets (DF) at the leased MTU cross the fan: option 26 is what the fan carries.
    const full = await topo.exec(leases[0].c, ['ping', '-n', '-c', '2', '-W', '2', '-M', 'do', '-s', String(MTU - 28), b.address], { allowFail: true });
    expect(full.stdout, full.stdout + full.stderr).toMatch(/ 2 received/);
  });

  it('carries UDP both ways: datagrams of every size up to the MTU, each one arrives (checksums finished)', async () => {
    const a = leases[0].c;
    const sizes = [1, 100, 1000, 1400, MTU - 28];
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const srv = topo.spawn(to, ['node', '-e', `const s=require('dgram').createSocket('udp4');const got={};let n=0;s.on('message',(m)=>{got[m.length]=(got[m.length]||0)+1;if(++n===${sizes.length * 10}){console.log('got '+JSON.stringify(got));process.exit(0)}});` +
        `s.bind(9999,'${to.address}',()=>console.log('bound'));setTimeout(()=>{console.log('got '+JSON.stringify(got));process.exit(1)},10000)`]);
      await srv.waitForLine(/^bound$/, 5000);
      await topo.exec(from, ['node', '-e', `const s=require('dgram').createSocket('udp4');const z=${JSON.stringify(sizes)};let i=0;` +
        `const go=()=>{if(i===z.length*10)return s.close();s.send(Buffer.alloc(z[i%z.length],i),9999,'${to.address}',()=>{i++;setTimeout(go,2)})};go()`]);
      const got = JSON.parse((await srv.waitForLine(/^got /, 15_000)).slice(4));
      expect(got, `${from.address} -> ${to.address}`).toEqual(Object.fromEntries(sizes.map((n) => [String(n), 10])));
    }
  });

  /** Sends one UDP datagram from a container to S's underlay address; returns the source S saw. */
  async function sourceSeenByStranger(from: Container, port: number): Promise<string> {
    const listener = topo.spawn(S, ['node', '-e', `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>{console.log('from '+r.address);process.exit(0)});s.bind(${port},()=>console.log('bound'));setTimeout(()=>process.exit(1),15000)`]);
    try {
      await listener.waitForLine(/^bound$/, 5000);
      // A few, a moment apart: the first may wait for ARP on the way.
      await topo.exec(from, ['node', '-e', `const s=require('dgram').createSocket('udp4');let i=0;const go=()=>{s.send('hw',${port},'${S.underlay}');if(++i===5)s.close();else setTimeout(go,200)};go()`]);
      return (await listener.waitForLine(/^from /, 5000)).slice(5);
    } finally {
      await listener.stop();
    }
  }

  it('egress NAT: from A to a stranger on the underlay the source is A\'s address; from B (--no-nat) the container\'s', async () => {
    // S takes B's container's own source address on its underlay (it has no route back to the overlay).
    await topo.exec(S, ['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0', `net.ipv4.conf.${S.underlayIf}.rp_filter=0`]);
    expect(await sourceSeenByStranger(leases[0].c, 7201)).toBe(A.underlay);
    expect(await sourceSeenByStranger(b, 7202)).toBe(b.address);
    expect((await topo.exec(A, ['nft', 'list', 'tables'])).stdout).toMatch(/userfan_/);
    expect((await topo.exec(B, ['nft', 'list', 'tables'])).stdout).not.toMatch(/userfan_/);
  });
});

/** The namespace's UDP sockets on the VXLAN port (`ss` lines). */
async function portHolders(topo: FanTopology, h: Host): Promise<string[]> {
  return (await topo.exec(h, ['ss', '-Hlun', `sport = :${PORT}`])).stdout.split('\n').filter(Boolean);
}

describe('--type vxlan teardown leaves nothing', () => {
  let topo: FanTopology;
  beforeAll(async () => {
    topo = await createFanTopology();
  });
  afterAll(async () => topo?.destroy());

  async function upWithDhcp(A: Host) {
    const d = await startDaemon(topo, A, vxlanArgs(A, ['--workers', '2', '--dhcp']));
    const up = await hostState(topo, A);
    expect(up.devices.sort()).toEqual([BRIDGE, 'uf-250']);
    expect(up.nft).toHaveLength(1);
    expect(up.userfan.some((p) => p.includes('dnsmasq'))).toBe(true);
    expect(await portHolders(topo, A)).toHaveLength(2); // a socket per worker
    return d;
  }

  it('SIGTERM', async () => {
    const [A] = topo.hosts;
    const clean = await hostState(topo, A);
    const d = await upWithDhcp(A);
    await d.process.stop(5000);
    expect(d.process.running).toBe(false);
    expect(await hostState(topo, A)).toEqual(clean);
    expect(await portHolders(topo, A)).toEqual([]);
  });

  it('userfan down from another shell', async () => {
    const [A] = topo.hosts;
    const clean = await hostState(topo, A);
    const d = await upWithDhcp(A);
    const r = await topo.exec(A, ['node', CLI, 'down', ...vxlanArgs(A).slice(0, 4)]);
    expect(r.stdout).toMatch(/250.0.0.0\/8 over 198.18.0.0\/16: down \(stopped, pid \d+\)/);
    await d.process.wait(5000).catch(() => {});
    expect(d.process.running).toBe(false);
    expect(await hostState(topo, A)).toEqual(clean);
    expect(await portHolders(topo, A)).toEqual([]);
  });

  it('kill -9 then userfan down, and up works again', async () => {
    const [A] = topo.hosts;
    const clean = await hostState(topo, A);
    const d = await upWithDhcp(A);
    d.process.kill('SIGKILL');
    await d.process.wait(5000).catch(() => {});
    const stale = await hostState(topo, A);
    expect(stale.show).toMatchObject([{ state: 'stale' }]);
    expect(stale.devices.sort(), 'what the daemon made outlives it').toEqual([BRIDGE, 'uf-250']);
    const r = await topo.exec(A, ['node', CLI, 'down', '-e']);
    expect(r.stdout).toMatch(/down \(cleaned-after-crash/);
    expect(await hostState(topo, A)).toEqual(clean);
    expect(await portHolders(topo, A)).toEqual([]);
    const again = await startDaemon(topo, A, vxlanArgs(A, ['--workers', '1']));
    await again.process.stop(5000);
    expect(await hostState(topo, A)).toEqual(clean);
  });
});

describe('--type vxlan: bad configuration exits 2 with one line, before anything is made', () => {
  let topo: FanTopology;
  beforeAll(async () => {
    topo = await createFanTopology();
  });
  afterAll(async () => topo?.destroy());

  it('the bridge\'s name held by another kind of device (the default name, and one given by --bridge)', async () => {
    const [A] = topo.hosts;
    // A kernel vxlan device of the default name (on another port, down: it holds no socket), and a veth.
    await topo.exec(A, ['ip', 'link', 'add', BRIDGE, 'type', 'vxlan', 'id', '5', 'dstport', '4790', 'dev', A.underlayIf]);
    const veth = `${topo.prefix}hwv`;
    await topo.exec(A, ['ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', `${topo.prefix}hwp`]);
    try {
      await expectAllRefused(topo, A, [
        { args: ['up', ...vxlanArgs(A)], message: /^userfan up: bridge "fan-250": exists on this host as a vxlan device, not a bridge .*: remove it or name another with --bridge$/ },
        { args: ['up', ...vxlanArgs(A, ['--bridge', veth])], message: new RegExp(`^userfan up: bridge "${veth}": exists on this host as a veth device, not a bridge .*: remove it or name another with --bridge$`) },
      ]);
    } finally {
      await topo.exec(A, ['ip', 'link', 'del', BRIDGE], { allowFail: true });
      await topo.exec(A, ['ip', 'link', 'del', veth], { allowFail: true });
    }
  });

  it('the VXLAN port held by another userfan\'s VXLAN fan', async () => {
    const [A] = topo.hosts;
    const first = await startDaemon(topo, A, ['-o', '251.0.0.0/8', '-u', A.underlayCidr, '--type', 'vxlan', '--workers', '1']);
    try {
      // As expectAllRefused, but `show` only by its fans: the running daemon's counters move meanwhile.
      const state = async () => {
        const s = await hostState(topo, A);
        return { ...s, show: (s.show as { overlay: string; pid: number }[]).map((r) => `${r.overlay} ${r.pid}`) };
      };
      const before = await state();
      const r = await topo.exec(A, ['node', CLI, 'up', ...vxlanArgs(A)], { allowFail: true, timeoutMs: 30_000 });
      expect(r.code, r.stderr + r.stdout).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(/^userfan up: --vxlan-port "8472": is already in use in this network namespace .*: remove it or pick another port$/);
      expect(await state()).toEqual(before);
      expect(await portHolders(topo, A)).toHaveLength(1); // the first daemon's one worker alone
      // Another port is fine.
      const second = await startDaemon(topo, A, vxlanArgs(A, ['--workers', '1', '--vxlan-port', '8473']));
      await second.process.stop(5000);
    } finally {
      await first.process.stop(5000);
    }
  });
});
