/**
 * The options of `userfan up`, each seen doing what it says on a running lab (root, namespaces). One lab
 * for all: host A runs `up --bridge NAME --host-reserve 250 --dhcp --ttl 9 --metrics PORT --workers 2`,
 * host B `up --no-nat --no-trace`, so each option is seen next to a host without it:
 * - --bridge: A's bridge has that name and the slice's .1; no fan-250-0-28; show says bridge=NAME;
 * - --host-reserve / --dhcp: .1–.250 are on A's bridge; containers that ask by DHCP get addresses of
 *   .251–.254 only (one asks for a reserved one), with the router and option 26, MTU 1480;
 * - SNAT vs --no-nat: a packet from A's container to B's underlay address arrives from A's address; one
 *   from B's container to A's arrives from the container's own overlay address;
 * - --ttl: A's outer packets carry TTL 9 on the wire (tshark), B's the default 64;
 * - --metrics PORT: served on 127.0.0.1 only;
 * - --workers 2: two workers, each with its own counters;
 * - --no-trace: `userfan trace` on B is refused; on A it captures.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFanTopology, type Container, type FanTopology, type Host } from '../../src/lab/topology.js';
import { CLI, startDaemon, UserfanLab, type Daemon } from '../../src/lab/userfan-lab.js';
import { waitForValue } from '../helpers/wait.js';
import { dhcpContainer as askDhcp, writeUdhcpcScript } from '../helpers/dhcp.js';

const METRICS_PORT = 9464;
const RESERVE = 250;

describe('userfan up options, on a running lab', () => {
  let topo: FanTopology;
  let lab: UserfanLab;
  let A: Host;
  let B: Host;
  let bridge: string;
  let script: string;
  const daemons: Daemon[] = [];
  const dhcp: { c: Container; lease: Record<string, string> }[] = [];
  let b: Container;

  /** A container on A's bridge with no address, which then asks for one with busybox udhcpc. */
  const dhcpContainer = (request?: string) => askDhcp(topo, A, bridge, script, request);

  beforeAll(async () => {
    topo = await createFanTopology();
    [A, B] = topo.hosts;
    bridge = `hb${topo.prefix}`;
    script = `/tmp/${topo.prefix}-udhcpc.sh`;
    writeUdhcpcScript(script); // print the lease, configure the container with it
    daemons.push(await startDaemon(topo, A, ['-o', '250.0.0.0/8', '-u', A.underlayCidr, '--bridge', bridge, '--host-reserve', String(RESERVE), '--dhcp', '--ttl', '9', '--metrics', String(METRICS_PORT), '--workers', '2']));
    daemons.push(await startDaemon(topo, B, ['-o', '250.0.0.0/8', '-u', B.underlayCidr, '--no-nat', '--no-trace', '--workers', '1']));
    lab = new UserfanLab(topo, daemons, []);
    b = await topo.addContainer(B);
    dhcp.push(await dhcpContainer(), await dhcpContainer('250.0.28.2'));
  }, 60_000);
  afterAll(async () => {
    rmSync(script ?? '/nonexistent', { force: true });
    await lab?.destroy();
    if (!lab) await topo?.destroy();
  });

  it('--bridge: the fan bridge has that name and holds the slice\'s .1; show says so', async () => {
    const links = (await topo.exec(A, ['ip', '-o', 'link', 'show'])).stdout;
    expect(links).toContain(` ${bridge}: `);
    expect(links).not.toContain('fan-250-0-28');
    expect((await topo.bridgeInfo(A, bridge)).address).toBe('250.0.28.1');
    const row = (await lab.show(A))[0];
    expect(row.bridge).toBe(bridge);
    expect(row.flags.split(' ')).toEqual(expect.arrayContaining(['dhcp', `bridge=${bridge}`, `host-reserve=${RESERVE}`]));
    // B, without --bridge, has fanctl's name.
    expect((await lab.show(B))[0].bridge).toBe('fan-250-0-27');
  });

  it('--host-reserve: the host holds .1 to .N of its slice on the bridge', async () => {
    const addrs = JSON.parse((await topo.exec(A, ['ip', '-j', '-4', 'addr', 'show', 'dev', bridge])).stdout)[0].addr_info as { local: string; prefixlen: number }[];
    const want = Array.from({ length: RESERVE }, (_, i) => `250.0.28.${i + 1}/24`);
    expect(addrs.map((x) => `${x.local}/${x.prefixlen}`).sort()).toEqual(want.sort());
  });

  it('--dhcp: containers get leases in the slice after the reserved addresses, with the router and option 26 (MTU 1480)', async () => {
    for (const { c, lease } of dhcp) {
      expect(lease, c.name).toMatchObject({ mask: '24', router: '250.0.28.1', mtu: '1480', serverid: '250.0.28.1' });
      const last = Number(lease.ip.split('.')[3]);
      expect(lease.ip, c.name).toMatch(/^250\.0\.28\.\d+$/);
      expect(last, `${c.name} got ${lease.ip}: .1-.${RESERVE} are the host's`).toBeGreaterThan(RESERVE);
      expect(last).toBeLessThan(255);
    }
    expect(dhcp[0].lease.ip).not.toBe(dhcp[1].lease.ip);
    // The lease works: across the fan to B's container.
    expect((await topo.ping(dhcp[0].c, b.address, { count: 2 })).received).toBe(2);
  });

  /** Sends one UDP datagram from a container to a host's underlay address; returns the source the host saw. */
  async function sourceSeenBy(to: Host, from: Container, port: number): Promise<string> {
    const listener = topo.spawn(to, ['node', '-e', `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>{console.log('from '+r.address);process.exit(0)});s.bind(${port},()=>console.log('bound'))`]);
    try {
      await listener.waitForLine(/^bound$/, 5000);
      await topo.exec(from, ['node', '-e', `const s=require('dgram').createSocket('udp4');s.send('hb',${port},'${to.underlay}',()=>s.close())`]);
      return (await listener.waitForLine(/^from /, 5000)).slice(5);
    } finally {
      await listener.stop();
    }
  }

  it('SNAT: a packet leaving the overlay from A is rewritten to A\'s address; from B (--no-nat) it is not', async () => {
    // A receives B's container's own source address on its underlay: let the kernel take it.
    await topo.exec(A, ['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0', `net.ipv4.conf.${A.underlayIf}.rp_filter=0`]);
    const a = dhcp[0].c;
    expect(await sourceSeenBy(B, a, 7101)).toBe(A.underlay);
    expect(await sourceSeenBy(A, b, 7102)).toBe(b.address);
    expect((await topo.exec(A, ['nft', 'list', 'tables'])).stdout).toMatch(/userfan_/);
    expect((await topo.exec(B, ['nft', 'list', 'tables'])).stdout).not.toMatch(/userfan_/);
    expect((await lab.show(B))[0].flags).toBe('no-nat');
  });

  it('--ttl: A\'s outer packets leave with TTL 9, B\'s with the default 64', async () => {
    const capture = (on: Host, from: Host) =>
      topo.spawn(on, ['timeout', '20', 'tshark', '-l', '-n', '-i', on.underlayIf, '-c', '1', '-f', `ip proto 4 and src host ${from.underlay}`, '-T', 'fields', '-e', 'ip.ttl', '-e', 'ip.src']);
    const onB = capture(B, A);
    const onA = capture(A, B);
    // "Capture started" comes once dumpcap really listens ("Capturing on" comes before); three echoes
    // leave room for a capture that starts late.
    await Promise.all([onB.waitForLine(/Capture started/, 10_000), onA.waitForLine(/Capture started/, 10_000)]);
    expect((await topo.ping(dhcp[0].c, b.address, { count: 3 })).received).toBe(3);
    await Promise.all([onB.wait(10_000), onA.wait(10_000)]);
    const fields = (p: typeof onA) => p.lines.map((l) => l.line).find((l) => /^\d+,\d+\t/.test(l))?.split('\t');
    // Outer TTL first, then the inner packet's (the echo request was forwarded once by A's kernel).
    expect(fields(onB)).toEqual(['9,63', `${A.underlay},${dhcp[0].c.address}`]);
    expect(fields(onA)?.[0]).toMatch(/^64,\d+$/);
  });

  it('--metrics PORT: served on the loopback only', async () => {
    const get = (host: string) => topo.exec(A, ['curl', '-sS', '--max-time', '5', `http://${host}:${METRICS_PORT}/metrics`], { allowFail: true });
    const local = await get('127.0.0.1');
    expect(local.code, local.stderr).toBe(0);
    expect(local.stdout).toMatch(/^userfan_workers 2$/m);
    const outside = await get(A.underlay);
    expect(outside.code, outside.stdout).not.toBe(0);
    expect(outside.stderr).toMatch(/Connection refused|Couldn't connect/);
    const listening = (await topo.exec(A, ['ss', '-Hltn', `sport = :${METRICS_PORT}`])).stdout.trim().split('\n');
    expect(listening.map((l) => l.split(/\s+/)[3])).toEqual([`127.0.0.1:${METRICS_PORT}`]);
  });

  it('--workers 2: two workers, each counting its own share', async () => {
    expect((await lab.show(A))[0].workers).toBe(2);
    expect((await lab.show(B))[0].workers).toBe(1);
    const stats = JSON.parse((await lab.cli(A, ['stats', '--json', '--interval', '100'])).stdout)[0];
    expect(stats.perWorker).toHaveLength(2);
    expect(stats.perWorker.reduce((n: number, w: { txPackets: number }) => n + w.txPackets, 0)).toBe(stats.total.txPackets);
  });

  it('--no-trace: userfan trace is refused on B, and captures on A', async () => {
    const refused = await lab.cli(B, ['trace', '--count', '1', '--seconds', '2']);
    expect(refused.stderr).toMatch(/runs with --no-trace/);
    expect(refused.code, refused.stdout + refused.stderr).not.toBe(0);
    // A traces: it says so in its log once attached, then the echoes are seen going out.
    const attached = daemons[0].process.lines.filter((l) => l.line.includes('"event":"trace-attached"')).length;
    const tracing = topo.spawn(A, ['node', CLI, 'trace', '--count', '2', '--seconds', '10']);
    try {
      await waitForValue('A to log trace-attached', () => daemons[0].process.lines.filter((l) => l.line.includes('"event":"trace-attached"')).length, (n) => n > attached);
      await topo.ping(dhcp[0].c, b.address, { count: 2 });
      expect(await tracing.wait(15_000)).toBe(0);
      expect(tracing.lines.map((l) => l.line).join('\n')).toMatch(/out 198\.18\.0\.28 > 198\.18\.0\.27 IPIP \| 250\.0\.28\.\d+ > 250\.0\.27\.3 ICMP/);
    } finally {
      await tracing.stop();
    }
  });
});
