/**
 * The Fan's VXLAN type (`up --type vxlan`; root, namespace lab). Against the kernel's own vxlan driver on
 * this machine, set up as a fan host is on the wire (bridge fan-250 holding slice.1/8 at MTU 1450, a vxlan
 * port with VNI 16384000 on UDP 8472; without the fan patch a flood entry to the one other host puts the
 * same packets on the wire): ARP, ICMP and TCP byte-exact both ways, and tshark checks the wire (VNI, port,
 * outer DF clear, UDP checksums good). Every receive check drops its bad datagram under its own reason,
 * and bad configuration exits 2 with one line before anything is made. Every lab is destroyed in finally.
 */
import { describe, expect, it } from 'vitest';
import { createFanTopology, type FanTopology, type Host } from '../../src/lab/topology.js';
import { CLI, startDaemon, UserfanLab, type Daemon } from '../../src/lab/userfan-lab.js';
import { waitForValue } from '../helpers/wait.js';

const VNI = 16384000; // 250.0.0.0 >> 8
const PORT = 8472;

/** A kernel vxlan device as a fan host's; once up, its socket holds the VXLAN port. */
async function kernelVxlanDevice(topo: FanTopology, h: Host, up = false): Promise<void> {
  await topo.exec(h, ['ip', 'link', 'add', 'vxfan', 'type', 'vxlan', 'id', String(VNI), 'dev', h.underlayIf, 'local', h.underlay, 'dstport', String(PORT)]);
  if (up) await topo.exec(h, ['ip', 'link', 'set', 'dev', 'vxfan', 'up']);
}

/** The kernel's vxlan as a fan host is on the wire, with the other host as the only flood destination. */
async function kernelVxlanHost(topo: FanTopology, h: Host, peer: Host): Promise<void> {
  const x = (argv: string[]) => topo.exec(h, argv);
  await x(['ip', 'link', 'add', 'name', 'fan-250', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
  await x(['ip', 'link', 'set', 'dev', 'fan-250', 'mtu', '1450', 'up']);
  await x(['ip', 'addr', 'add', `${h.slice.gateway}/8`, 'dev', 'fan-250']);
  await kernelVxlanDevice(topo, h);
  await x(['ip', 'link', 'set', 'dev', 'vxfan', 'mtu', '1450', 'master', 'fan-250', 'up']);
  await x(['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'vxfan', 'dst', peer.underlay]);
}

async function userfanVxlan(topo: FanTopology, h: Host, extra: string[] = []): Promise<Daemon> {
  return startDaemon(topo, h, ['-o', h.slice.overlay, '-u', h.underlayCidr, '--workers', '1', '--type', 'vxlan', ...extra]);
}

/** Datagrams on the underlay to or from `h`'s VXLAN port, decoded by tshark as VXLAN (outer fields: first occurrence). */
function capture(topo: FanTopology, h: Host, count: number) {
  return topo.spawn(h, [
    'timeout', '60', 'tshark', '-l', '-n', '-i', h.underlayIf, '-c', String(count), '-f', `udp port ${PORT}`, '-d', `udp.port==${PORT},vxlan`,
    '-o', 'udp.check_checksum:TRUE', '-T', 'fields', '-E', 'separator=;', '-E', 'occurrence=f',
    '-e', 'ip.src', '-e', 'ip.dst', '-e', 'ip.flags.df', '-e', 'udp.dstport', '-e', 'udp.checksum.status', '-e', 'vxlan.vni', '-e', 'frame.len',
  ]);
}

const stats = async (lab: UserfanLab, h: Host) => JSON.parse((await lab.cli(h, ['stats', '--json', '--interval', '100'])).stdout)[0];

describe('--type vxlan against the kernel vxlan driver', () => {
  it('carries ARP, ICMP and 64 MiB of TCP both ways byte-exact; on the wire: VXLAN on UDP 8472, VNI 16384000, DF clear, good UDP checksums', async () => {
    const topo = await createFanTopology();
    let lab: UserfanLab | undefined;
    try {
      const [A, K] = topo.hosts; // A: userfan; K: the kernel
      await kernelVxlanHost(topo, K, A);
      // As a wire has them: the UDP checksums computed, not left to a veth's offload (tshark would see them partial).
      await topo.exec(A, ['ethtool', '-K', A.underlayIf, 'tx', 'off']);
      const da = await userfanVxlan(topo, A);
      const a = await topo.addContainer(A, { bridge: 'fan-250', prefixLen: 8 });
      const k = await topo.addContainer(K, { bridge: 'fan-250', prefixLen: 8 });
      lab = new UserfanLab(topo, [da], [[a], [k]]);
      const cap = capture(topo, K, 40);
      await cap.waitForLine(/Capturing on/, 10_000);
      for (const c of [a, k]) await topo.exec(c, ['ip', 'neigh', 'flush', 'all']); // the echoes start with ARP
      expect((await topo.ping(a, k.address, { count: 3 })).received).toBe(3);
      expect((await topo.ping(k, a.address, { count: 3 })).received).toBe(3);
      // ARP went through the tunnel both ways: each side learnt the other container's MAC (the only way
      // it can: the two are on different hosts, one L2 segment only through VXLAN).
      for (const [c, peer] of [[a, k], [k, a]] as const) {
        const n = await topo.exec(c, ['ip', '-j', 'neigh', 'show', peer.address]);
        expect(JSON.parse(n.stdout)[0]?.lladdr, `${c.address} learnt ${peer.address}`).toMatch(/^[0-9a-f:]{17}$/);
      }
      for (const [from, to] of [[a, k], [k, a]] as const) {
        const t = await lab.transfer(from, to, 64 << 20, { deadlineMs: 120_000 });
        expect(t.match, JSON.stringify(t)).toBe(true);
      }
      await cap.wait(20_000);
      const rows = cap.lines.map((l) => l.line.split(';')).filter((f) => f.length === 7);
      expect(rows.length).toBeGreaterThan(10);
      const fromA = rows.filter((f) => f[0] === A.underlay);
      const fromK = rows.filter((f) => f[0] === K.underlay);
      expect(fromA.length).toBeGreaterThan(0);
      expect(fromK.length).toBeGreaterThan(0);
      for (const f of rows) {
        expect(f[3], 'UDP destination port').toBe(String(PORT));
        expect(f[5], 'VNI').toBe(String(VNI));
        expect(['0', 'False'], 'outer DF').toContain(f[2]);
      }
      // userfan's datagrams: the UDP checksum verifies (tshark's status 1 = good; 0 = bad, 2 = unchecked).
      for (const f of fromA) expect(f[4], 'UDP checksum of a datagram from userfan').toBe('1');
      const st = await stats(lab, A);
      expect(st.total.dropsTotal, JSON.stringify(st.total.drops)).toBeLessThan(10); // IGMP/broadcast noise only
      // The kernel here floods what the Fan patch would not send at all (its flood entry: a broadcast for a
      // non-overlay address); userfan drops that as foreign. Nothing else arriving may be dropped.
      expect(Object.keys(st.total.drops).filter((r) => r.startsWith('rx-') && r !== 'rx-foreign-overlay')).toEqual([]);
    } finally {
      if (lab) await lab.destroy();
      else await topo.destroy();
    }
  }, 240_000);
});

describe('--type vxlan between userfan hosts', () => {
  it('three hosts: an ARP for a container on B reaches only B; show names the type; down leaves nothing', async () => {
    const topo = await createFanTopology({ hosts: 3 });
    let lab: UserfanLab | undefined;
    try {
      const [A, B, C] = topo.hosts;
      const daemons = [await userfanVxlan(topo, A), await userfanVxlan(topo, B), await userfanVxlan(topo, C)];
      const [a, b] = [await topo.addContainer(A, { bridge: 'fan-250', prefixLen: 8 }), await topo.addContainer(B, { bridge: 'fan-250', prefixLen: 8 })];
      lab = new UserfanLab(topo, daemons, [[a], [b]]);
      const before = await stats(lab, C);
      // The first echo needs an ARP broadcast on A's bridge: the TAP sends it to the owner of its target only.
      expect((await topo.ping(a, b.address, { count: 3 })).received).toBe(3);
      const [sb, sc] = [await stats(lab, B), await stats(lab, C)];
      expect(sb.total.rxPackets).toBeGreaterThanOrEqual(4); // ARP and echoes
      expect(sc.total.rxPackets - before.total.rxPackets, 'nothing reached C').toBe(0);
      // C's own bridge may send something (tx drops of its own); nothing may arrive, passed or dropped.
      const rxDrops = (st: { total: { drops: Record<string, number> } }) => Object.entries(st.total.drops).filter(([r]) => r.startsWith('rx-')).reduce((n, [, v]) => n + v, 0);
      expect(rxDrops(sc) - rxDrops(before), 'nothing reached C').toBe(0);
      const show = await lab.cli(A, ['show']);
      expect(show.stdout).toContain(`vxlan (VNI ${VNI}, UDP port ${PORT})`);
      const shown = await lab.show(A);
      expect(shown[0].bridge).toBe('fan-250');
      for (const d of daemons) await d.process.stop(5000); // SIGTERM: each daemon tears down what it made
      for (const h of [A, B, C]) {
        const links = await topo.exec(h, ['ip', '-o', 'link', 'show']);
        expect(links.stdout, `host ${h.name} after down`).not.toMatch(/fan-250|uf-250/);
      }
    } finally {
      if (lab) await lab.destroy();
      else await topo.destroy();
    }
  }, 180_000);
});

/** A VXLAN datagram built here from RFC 7348 and IEEE 802.3, independent of src/wire/vxlan.ts. */
function datagram(o: { flags?: number; vni?: number; reserved?: number; srcMac?: number[]; type?: number; src: string; dst: string; len?: number }): Buffer {
  const ip = (s: string) => s.split('.').map(Number);
  const frame = Buffer.alloc(14 + 20 + 8);
  frame.set([0x02, 0, 0, 0, 0, 0x99], 0);
  frame.set(o.srcMac ?? [0x02, 0, 0, 0, 0, 0x27], 6);
  frame.writeUInt16BE(o.type ?? 0x0800, 12);
  frame.set([0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, ...ip(o.src), ...ip(o.dst)], 14);
  const vx = Buffer.from([o.flags ?? 0x08, 0, 0, 0, (o.vni ?? VNI) >>> 16, ((o.vni ?? VNI) >>> 8) & 0xff, (o.vni ?? VNI) & 0xff, o.reserved ?? 0]);
  return Buffer.concat([vx, frame]).subarray(0, o.len ?? 8 + frame.length);
}

describe('--type vxlan receive checks', () => {
  it('drops each bad datagram under its own reason', async () => {
    const topo = await createFanTopology();
    let lab: UserfanLab | undefined;
    try {
      const [A, B] = topo.hosts;
      const da = await userfanVxlan(topo, A);
      lab = new UserfanLab(topo, [da], [[], []]);
      const good = { src: '250.0.27.3', dst: '250.0.28.3' };
      const cases: [string, Buffer][] = [
        ['rx-vxlan-truncated', datagram({ ...good, len: 8 + 10 })],
        ['rx-vxlan-flags', datagram({ ...good, flags: 0x0c })],
        ['rx-vxlan-flags', datagram({ ...good, reserved: 1 })],
        ['rx-vxlan-vni', datagram({ ...good, vni: VNI + 1 })],
        ['rx-vxlan-ethertype', datagram({ ...good, type: 0x86dd })],
        ['rx-vxlan-bad-mac', datagram({ ...good, srcMac: [0x01, 0, 0x5e, 0, 0, 1] })],
        ['rx-vxlan-bad-mac', datagram({ ...good, srcMac: [0, 0, 0, 0, 0, 0] })],
        ['rx-spoofed-source', datagram({ src: '250.0.26.3', dst: '250.0.28.3' })], // 250.0.26.0/24 is not B's
        ['rx-not-local', datagram({ src: '250.0.27.3', dst: '250.0.29.3' })], // for another host's slice
      ];
      const before = await stats(lab, A);
      const send = `const s=require('dgram').createSocket('udp4');const d=${JSON.stringify(cases.map(([, b]) => b.toString('hex')))};` +
        `let i=0;const go=()=>{if(i===d.length)return s.close();s.send(Buffer.from(d[i++],'hex'),${PORT},'${A.underlay}',go)};go();`;
      await topo.exec(B, ['node', '-e', send]);
      const want: Record<string, number> = {};
      for (const [r] of cases) want[r] = (want[r] ?? 0) + 1;
      const grownNow = async () => {
        const now = await stats(lab!, A);
        return Object.fromEntries(Object.keys(want).map((r) => [r, (now.dropsAll[r] ?? 0) - (before.dropsAll[r] ?? 0)]));
      };
      const grown = await waitForValue('every bad datagram counted', grownNow, (g) => Object.keys(want).every((r) => g[r] >= want[r]), { timeoutMs: 5000, intervalMs: 50 }).catch(grownNow);
      expect(grown).toEqual(want);
      expect((await stats(lab, A)).total.rxPackets - before.total.rxPackets, 'none of them reached the TAP').toBe(0);
    } finally {
      if (lab) await lab.destroy();
      else await topo.destroy();
    }
  }, 120_000);
});

describe('--type vxlan: bad configuration exits 2 with one line, before anything is made', () => {
  it.each([
    ['a type other than ipip or vxlan', ['--type', 'gre'], /--type "gre": must be ipip .* or vxlan/],
    ['a VNI out of range', ['--type', 'vxlan', '--vni', String(2 ** 24)], /--vni "16777216": must be a whole number from 0 to 16777215/],
    ['--vni without --type vxlan', ['--vni', '5'], /--vni "5": applies to --type vxlan only/],
    ['the VXLAN port held by a kernel vxlan device', ['--type', 'vxlan'], /--vxlan-port "8472": is already in use/],
  ])('%s', async (_why, args, message) => {
    const topo = await createFanTopology();
    try {
      const [A] = topo.hosts;
      if (args.includes('vxlan') && !args.includes('--vni')) await kernelVxlanDevice(topo, A, true);
      const linksBefore = (await topo.exec(A, ['ip', '-o', 'link', 'show'])).stdout;
      const r = await topo.exec(A, ['node', CLI, 'up', '-o', A.slice.overlay, '-u', A.underlayCidr, ...args], { allowFail: true, timeoutMs: 20_000 });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
      expect((await topo.exec(A, ['ip', '-o', 'link', 'show'])).stdout).toBe(linksBefore);
    } finally {
      await topo.destroy();
    }
  }, 60_000);
});
