/**
 * The data plane as users run it: `userfan up` in host namespaces, containers on its bridges, traffic
 * between them. Root only (network namespaces); every lab is torn down in afterAll, also on failure.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUserfanLab, startDaemon, type UserfanLab } from '../../src/lab/userfan-lab.js';
import { createFanTopology, type FanTopology } from '../../src/lab/topology.js';
import { CLI } from '../../src/lab/userfan-lab.js';
import { hostState as leftovers } from '../helpers/host-state.js';
import { waitForValue } from '../helpers/wait.js';

describe('two hosts, a container on each', () => {
  let lab: UserfanLab;
  beforeAll(async () => {
    lab = await createUserfanLab({ workers: 2 });
  });
  afterAll(async () => lab?.destroy());

  it('carries ICMP both ways', async () => {
    const [[a], [b]] = lab.containers;
    expect((await lab.topo.ping(a, b.address, { count: 3 })).received).toBe(3);
    expect((await lab.topo.ping(b, a.address, { count: 3 })).received).toBe(3);
  });

  it('carries UDP both ways, every datagram counted by both daemons', async () => {
    const [A, B] = lab.hosts;
    const [[a], [b]] = lab.containers;
    const before = [(await lab.show(A))[0], (await lab.show(B))[0]];
    for (const [from, to] of [[a, b], [b, a]]) {
      // A UDP echo through the fan: node's dgram on both ends, bounded by a deadline.
      const srv = lab.topo.spawn(to, ['node', '-e', `const s=require('dgram').createSocket('udp4');let n=0;s.on('message',(m,r)=>{n++;s.send(m,r.port,r.address)});s.bind(9999,()=>console.log('bound'));setTimeout(()=>{console.log('got '+n);process.exit(0)},8000)`]);
      await srv.waitForLine(/bound/, 5000);
      const cl = await lab.topo.exec(from, ['node', '-e', `const s=require('dgram').createSocket('udp4');let k=0;s.on('message',()=>{if(++k===50){console.log('echoed '+k);process.exit(0)}});for(let i=0;i<50;i++)s.send(Buffer.alloc(1000,i),9999,'${to.address}');setTimeout(()=>{console.log('echoed '+k);process.exit(1)},5000)`], { allowFail: true });
      expect(cl.stdout.trim()).toBe('echoed 50');
      await srv.stop();
    }
    // Each host sent 50 requests and 50 replies and received as many: exactly 100 each way on both daemons
    // (once the workers have counted the last one), so a datagram lost or counted twice fails.
    const delta = async () => {
      const [a1, b1] = [(await lab.show(A))[0], (await lab.show(B))[0]];
      return { aTx: a1.txPackets - before[0].txPackets, aRx: a1.rxPackets - before[0].rxPackets, bTx: b1.txPackets - before[1].txPackets, bRx: b1.rxPackets - before[1].rxPackets };
    };
    const counted = await waitForValue('both daemons to count 100 datagrams each way', delta, (d) => Object.values(d).every((n) => n >= 100), { timeoutMs: 5000 }).catch(() => delta());
    expect(counted).toEqual({ aTx: 100, aRx: 100, bTx: 100, bRx: 100 });
  });

  it('carries a 64 MB TCP transfer byte-exact, both directions', async () => {
    const [[a], [b]] = lab.containers;
    const ab = await lab.transfer(a, b, 64 << 20);
    expect(ab.match, JSON.stringify(ab)).toBe(true);
    const ba = await lab.transfer(b, a, 8 << 20);
    expect(ba.match, JSON.stringify(ba)).toBe(true);
  });

  it('passes a 1480-byte packet with DF and answers 1481 bytes with ICMP fragmentation-needed', async () => {
    const [A] = lab.hosts;
    const [[], [b]] = lab.containers;
    // A container whose own MTU is 1500, so the oversize packet reaches the host and the TUN (MTU 1480).
    const big = await lab.topo.addContainer(A, { mtu: 1500, name: 'A-big' });
    const fits = await lab.topo.exec(big, ['ping', '-c', '2', '-W', '2', '-M', 'do', '-s', String(1480 - 28), b.address], { allowFail: true });
    expect(fits.code, fits.stdout).toBe(0);
    const over = await lab.topo.exec(big, ['ping', '-c', '2', '-W', '2', '-M', 'do', '-s', String(1481 - 28), b.address], { allowFail: true });
    expect(over.code).not.toBe(0);
    // The answer comes from the host (the bridge address), as the kernel routes into the TUN's MTU.
    expect(over.stdout).toMatch(/From 250\.0\.28\.1 icmp_seq=\d+ Frag needed and DF set \(mtu = 1480\)/);
  });

  it('keeps other flows going while traffic goes to an overlay address whose host does not exist', async () => {
    const [A, B] = lab.hosts;
    const [[a], [b]] = lab.containers;
    const row = async (h: typeof A) => (await lab.show(h))[0];
    const [a0, b0] = [await row(A), await row(B)];
    // 250.0.66.3 belongs to 198.18.0.66, which is on no host: A encapsulates and sends, the kernel's ARP for
    // it never resolves. 60 echoes 50 ms apart outlast the 10 live ones 200 ms apart.
    const ghost = lab.topo.spawn(a, ['ping', '-n', '-c', '60', '-i', '0.05', '-W', '1', '250.0.66.3']);
    try {
      await waitForValue('A to send echoes to the missing host', async () => (await row(A)).txPackets - a0.txPackets, (n) => n >= 5);
      const live = await lab.topo.ping(a, b.address, { count: 10 });
      expect(live.received, live.output).toBe(10);
      expect(ghost.running, 'the echoes to the missing host were still going').toBe(true);
      await ghost.wait(10_000);
    } finally {
      await ghost.stop();
    }
    expect(ghost.lines.map((l) => l.line).join('\n')).toMatch(/60 packets transmitted, 0 received/);
    // A sent all 70 requests (B received only its 10 and answered them): nothing stalled or was dropped.
    const [a1, b1] = [await row(A), await row(B)];
    expect([a1.txPackets - a0.txPackets, a1.rxPackets - a0.rxPackets, b1.rxPackets - b0.rxPackets, a1.drops - a0.drops]).toEqual([70, 10, 10, 0]);
  });

  it('counts a packet that reaches the TUN for an address outside every fan as tx-no-fan', async () => {
    const [A] = lab.hosts;
    const [[a]] = lab.containers;
    const tun = (await lab.show(A))[0].daemon as string;
    // 251.0.0.0/8 is class E like the overlay and belongs to no fan here; route it into the TUN on A only.
    await lab.topo.exec(A, ['ip', 'route', 'add', '251.0.0.0/8', 'dev', tun]);
    try {
      const before = (await lab.show(A))[0].dropsByReason?.['tx-no-fan'] ?? 0;
      await lab.topo.exec(a, ['ping', '-c', '3', '-i', '0.05', '-W', '1', '251.0.0.9'], { allowFail: true });
      const after = (await lab.show(A))[0].dropsByReason?.['tx-no-fan'] ?? 0;
      expect(after - before).toBe(3);
    } finally {
      await lab.topo.exec(A, ['ip', 'route', 'del', '251.0.0.0/8', 'dev', tun], { allowFail: true });
    }
  });

  it('refuses to bring up a fan that is already up, clearly, and changes nothing', async () => {
    const [A] = lab.hosts;
    const before = await leftovers(lab.topo, A);
    const r = await lab.cli(A, ['up', '-o', '250.0.0.0/8', '-u', A.underlayCidr]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^userfan up: fan "250.0.0.0\/8 over 198.18.0.0\/16": is already up on this host \(EEXIST\): userfan pid \d+/);
    expect(await leftovers(lab.topo, A)).toEqual(before);
    expect((await lab.topo.ping(lab.containers[0][0], lab.containers[1][0].address, { count: 1 })).received).toBe(1);
  });
});

describe('three hosts on one underlay', () => {
  let lab: UserfanLab;
  beforeAll(async () => {
    lab = await createUserfanLab({ hosts: 3 });
  });
  afterAll(async () => lab?.destroy());

  it('sends A to C directly: B sees none of it', async () => {
    const [, B] = lab.hosts;
    const [[a], , [c]] = lab.containers;
    const rowB = async () => (await lab.show(B))[0];
    const before = await rowB();
    const r = await lab.transfer(a, c, 4 << 20);
    expect(r.match).toBe(true);
    expect((await lab.topo.ping(c, a.address, { count: 3 })).received).toBe(3);
    const after = await rowB();
    expect(after.rxPackets - before.rxPackets).toBe(0);
    expect(after.txPackets - before.txPackets).toBe(0);
    expect(after.drops - before.drops).toBe(0);
  });
});

describe('two fans on one host', () => {
  let topo: FanTopology;
  const daemons: Awaited<ReturnType<typeof startDaemon>>[] = [];
  beforeAll(async () => {
    topo = await createFanTopology({ secondWidth: true });
  });
  afterAll(async () => {
    await Promise.all(daemons.map((d) => d.process.stop(5000)));
    await topo?.destroy();
  });

  it('carries both at once, each in its own slice and bridge (one daemon with -a, one per fan)', async () => {
    const [A, B] = topo.hosts;
    // A: both fans from a config file in one daemon (as fanctl up -a). B: a daemon per fan.
    // 251.1.0.0/16 over 198.18.7.0/24 (class E like 250/8, disjoint from it) for the second fan.
    const conf = `/tmp/${topo.lab.prefix}-fan.conf`;
    await topo.exec(undefined, ['sh', '-c', `printf '# two fans\\n250.0.0.0/8 ${A.underlayCidr}\\n251.1.0.0/16 ${A.underlay2}/24\\n252.0.0.0/8 ${A.underlayCidr} off\\n' > ${conf}`]);
    try {
      daemons.push(await startDaemon(topo, A, ['-a', '--config', conf, '--workers', '1']));
    } finally {
      await topo.exec(undefined, ['rm', '-f', conf]);
    }
    daemons.push(await startDaemon(topo, B, ['-o', '250.0.0.0/8', '-u', B.underlayCidr, '--workers', '1']));
    daemons.push(await startDaemon(topo, B, ['-o', '251.1.0.0/16', '-u', `${B.underlay2}/24`, '--workers', '1']));
    const a1 = await topo.addContainer(A);
    const b1 = await topo.addContainer(B);
    const a2 = await topo.addContainer(A, { bridge: 'fan-251-1-28', address: '251.1.28.3' });
    const b2 = await topo.addContainer(B, { bridge: 'fan-251-1-27', address: '251.1.27.3' });
    expect((await topo.ping(a1, b1.address, { count: 3 })).received).toBe(3);
    expect((await topo.ping(a2, b2.address, { count: 3 })).received).toBe(3);
    expect((await topo.ping(b2, a2.address, { count: 3 })).received).toBe(3);
    const show = JSON.parse((await topo.exec(A, ['node', CLI, 'show', '--json'])).stdout);
    expect(show.map((r: any) => r.bridge).sort()).toEqual(['fan-250-0-28', 'fan-251-1-28']);
    // On B each daemon's socket also sees the other fan's packets: counted as foreign, never as spoofed.
    const showB = JSON.parse((await topo.exec(B, ['node', CLI, 'show', '--json'])).stdout);
    for (const row of showB) {
      expect(row.rxPackets).toBeGreaterThanOrEqual(3);
      expect(Object.keys(row.dropsByReason ?? {}).filter((k) => k !== 'rx-foreign-overlay')).toEqual([]);
    }
  });
});

describe('teardown', () => {
  let topo: FanTopology;
  beforeAll(async () => {
    topo = await createFanTopology({ hosts: 2 });
  });
  afterAll(async () => topo?.destroy());

  it('SIGTERM leaves no device, route, nftables table, state or process behind', async () => {
    const [A] = topo.hosts;
    const clean = await leftovers(topo, A);
    const d = await startDaemon(topo, A, ['-o', '250.0.0.0/8', '-u', A.underlayCidr, '--workers', '2', '--dhcp']);
    const up = await leftovers(topo, A);
    expect(up.devices.sort()).toEqual(['fan-250-0-28', 'uf-250-0-28']);
    expect(up.routes).toHaveLength(2);
    expect(up.nft).toHaveLength(1);
    expect(up.userfan.some((p) => p.includes('dnsmasq'))).toBe(true);
    expect(up.runDir).toMatch(/fan-250-0-28\.dnsmasq\.pid/);
    await d.process.stop(5000);
    expect(d.process.running).toBe(false);
    expect(await leftovers(topo, A)).toEqual(clean);
    // One log line per event: the fan went down, then the daemon.
    const events = d.process.lines.map((l) => /"event":"([a-z-]+)"/.exec(l.line)?.[1]).filter(Boolean);
    expect(events.slice(-3)).toEqual(['stopping', 'fan-down', 'down']);
  });

  it('userfan down from another shell does the same', async () => {
    const [A] = topo.hosts;
    const clean = await leftovers(topo, A);
    const d = await startDaemon(topo, A, ['-o', '250.0.0.0/8', '-u', A.underlayCidr, '--workers', '1']);
    const r = await topo.exec(A, ['node', CLI, 'down', '-o', '250.0.0.0/8', '-u', A.underlayCidr]);
    expect(r.stdout).toMatch(/250.0.0.0\/8 over 198.18.0.0\/16: down \(stopped, pid \d+\)/);
    await d.process.wait(5000).catch(() => {});
    expect(d.process.running).toBe(false);
    expect(await leftovers(topo, A)).toEqual(clean);
  });

  it('userfan down after SIGKILL removes everything, and up works again', async () => {
    const [A] = topo.hosts;
    const clean = await leftovers(topo, A);
    const d = await startDaemon(topo, A, ['-o', '250.0.0.0/8', '-u', A.underlayCidr, '--workers', '1']);
    d.process.kill('SIGKILL');
    await d.process.wait(5000).catch(() => {});
    const stale = JSON.parse((await topo.exec(A, ['node', CLI, 'show', '--json'])).stdout);
    expect(stale[0].state).toBe('stale');
    const r = await topo.exec(A, ['node', CLI, 'down', '-e']);
    expect(r.stdout).toMatch(/down \(cleaned-after-crash/);
    expect(await leftovers(topo, A)).toEqual(clean);
    const again = await startDaemon(topo, A, ['-o', '250.0.0.0/8', '-u', A.underlayCidr, '--workers', '1']);
    await again.process.stop(5000);
    expect(await leftovers(topo, A)).toEqual(clean);
  });
});
