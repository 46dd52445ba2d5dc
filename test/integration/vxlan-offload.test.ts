/**
 * The VXLAN type's offloads (root, namespace lab): TAP offloads, TX GSO's UDP-tunnel form, UDP GSO and
 * UDP GRO. Between userfan hosts: TCP super-frames leave whole and arrive whole, both ways, byte-exact;
 * with --send raw they leave by UDP GSO and arrive glued (UDP GRO); a host with --offload off takes what
 * either sends. Against the kernel's vxlan, with the sender's veth cutting in software as a NIC without
 * tunnel offloads would: every TCP segment on the wire carries a UDP checksum that verifies and no DF.
 */
import { describe, expect, it } from 'vitest';
import { createFanTopology, type FanTopology, type Host } from '../../src/lab/topology.js';
import { startDaemon, UserfanLab, type Daemon } from '../../src/lab/userfan-lab.js';

const VNI = 16384000;
const PORT = 8472;
const MTU = 1450;
const ON_FAN = { bridge: 'fan-250', prefixLen: 8 };

function userfanVxlan(topo: FanTopology, h: Host, extra: string[] = []): Promise<Daemon> {
  return startDaemon(topo, h, ['-o', h.slice.overlay, '-u', h.underlayCidr, '--workers', '1', '--type', 'vxlan', ...extra]);
}

interface Totals {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  rxBatches: number;
  txGsoFrames: number;
  dropsTotal: number;
  drops: Record<string, number>;
}
/**
 * Drops that would mean a packet of the transfer was lost or refused (a bridge's own chatter, e.g. to a
 * multicast address outside the fan, is dropped as tx-no-fan and does not count).
 */
const lost = (t: Totals) => Object.entries(t.drops).filter(([r]) => r !== 'tx-no-fan');
const totals = async (lab: UserfanLab, h: Host): Promise<Totals> => JSON.parse((await lab.cli(h, ['stats', '--json', '--interval', '100'])).stdout)[0].total;
const minus = (a: Totals, b: Totals) => ({
  txPackets: a.txPackets - b.txPackets, rxPackets: a.rxPackets - b.rxPackets, rxBytes: a.rxBytes - b.rxBytes, rxBatches: a.rxBatches - b.rxBatches,
  txGsoFrames: a.txGsoFrames - b.txGsoFrames,
});

async function pair(extraA: string[], extraB: string[]) {
  const topo = await createFanTopology();
  try {
    const [A, B] = topo.hosts;
    const da = await userfanVxlan(topo, A, extraA);
    const db = await userfanVxlan(topo, B, extraB);
    const [a, b] = [await topo.addContainer(A, ON_FAN), await topo.addContainer(B, ON_FAN)];
    const lab = new UserfanLab(topo, [da, db], [[a], [b]]);
    expect((await topo.ping(a, b.address, { count: 2 })).received).toBe(2);
    return { topo, lab, A, B, a, b };
  } catch (e) {
    await topo.destroy();
    throw e;
  }
}

describe('--type vxlan offloads between userfan hosts', () => {
  it('TX GSO: super-frames leave whole and arrive whole, both ways; 64 MiB byte-exact both ways', async () => {
    const { lab, A, B, a, b } = await pair([], []);
    try {
      for (const [from, to, H, R] of [[a, b, A, B], [b, a, B, A]] as const) {
        const [t0, r0] = [await totals(lab, H), await totals(lab, R)];
        const t = await lab.transfer(from, to, 64 << 20, { deadlineMs: 120_000 });
        expect(t.match, JSON.stringify(t)).toBe(true);
        const [sent, got] = [minus(await totals(lab, H), t0), minus(await totals(lab, R), r0)];
        expect(sent.txGsoFrames, `${H.name} sent super-frames whole`).toBeGreaterThan(100);
        // What the receiver got was mostly whole super-frames: more inner bytes per datagram than the MTU holds.
        expect(got.rxBytes / got.rxPackets, `${R.name} received them whole`).toBeGreaterThan(4 * MTU);
      }
      for (const h of [A, B]) expect(lost(await totals(lab, h)), `${h.name}: drops`).toEqual([]);
    } finally {
      await lab.destroy();
    }
  }, 300_000);

  it('--send raw: super-frames leave by UDP GSO and arrive glued (UDP GRO); byte-exact both ways', async () => {
    const { lab, A, B, a, b } = await pair(['--send', 'raw'], ['--send', 'raw']);
    try {
      for (const [from, to, H, R] of [[a, b, A, B], [b, a, B, A]] as const) {
        const r0 = await totals(lab, R);
        const t = await lab.transfer(from, to, 32 << 20, { deadlineMs: 120_000 });
        expect(t.match, JSON.stringify(t)).toBe(true);
        const got = minus(await totals(lab, R), r0);
        expect((await totals(lab, H)).txGsoFrames, `${H.name}: nothing by MAC`).toBe(0);
        // recvmmsg takes at most 64 messages per batch: more datagrams than that per batch means glued ones.
        expect(got.rxPackets / got.rxBatches, `${R.name}: datagrams per receive batch`).toBeGreaterThan(64);
      }
      for (const h of [A, B]) expect(lost(await totals(lab, h)), `${h.name}: drops`).toEqual([]);
    } finally {
      await lab.destroy();
    }
  }, 300_000);

  it.each([
    ['the defaults (TX GSO)', []],
    ['--send raw (UDP GSO)', ['--send', 'raw']],
  ])('a host with --offload off takes what %s sends, and sends back; byte-exact both ways', async (_name, extraA) => {
    const { lab, A, B, a, b } = await pair(extraA, ['--offload', 'off']);
    try {
      const t = await lab.transfer(a, b, 32 << 20, { deadlineMs: 120_000 });
      expect(t.match, JSON.stringify(t)).toBe(true);
      const back = await lab.transfer(b, a, 16 << 20, { deadlineMs: 120_000 });
      expect(back.match, JSON.stringify(back)).toBe(true);
      expect((await lab.show(B))[0].offload).toMatch(/^off/);
      for (const h of [A, B]) expect(lost(await totals(lab, h)), `${h.name}: drops`).toEqual([]);
    } finally {
      await lab.destroy();
    }
  }, 300_000);
});

describe('--type vxlan TX GSO against the kernel vxlan driver', () => {
  it('every TCP segment on the wire, cut by the kernel from a whole frame, has a good UDP checksum and DF clear', async () => {
    const topo = await createFanTopology();
    let lab: UserfanLab | undefined;
    try {
      const [A, K] = topo.hosts;
      const x = (argv: string[]) => topo.exec(K, argv);
      await x(['ip', 'link', 'add', 'name', 'fan-250', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
      await x(['ip', 'link', 'set', 'dev', 'fan-250', 'mtu', String(MTU), 'up']);
      await x(['ip', 'addr', 'add', `${K.slice.gateway}/8`, 'dev', 'fan-250']);
      await x(['ip', 'link', 'add', 'vxfan', 'type', 'vxlan', 'id', String(VNI), 'dev', K.underlayIf, 'local', K.underlay, 'dstport', String(PORT)]);
      await x(['ip', 'link', 'set', 'dev', 'vxfan', 'mtu', String(MTU), 'master', 'fan-250', 'up']);
      await x(['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'vxfan', 'dst', A.underlay]);
      // A NIC without checksum or tunnel offloads: the kernel cuts A's whole frames in software, and what
      // tshark sees on the wire is the segments with their checksums as cut.
      await topo.exec(A, ['ethtool', '-K', A.underlayIf, 'tx', 'off']);
      const da = await userfanVxlan(topo, A);
      const [a, k] = [await topo.addContainer(A, ON_FAN), await topo.addContainer(K, ON_FAN)];
      lab = new UserfanLab(topo, [da], [[a], [k]]);
      expect((await topo.ping(a, k.address, { count: 2 })).received).toBe(2);
      // Let the daemon's copy of the kernel's neighbours fill (refreshed once a second): frames go by MAC then.
      await new Promise((r) => setTimeout(r, 1200));
      const cap = topo.spawn(K, [
        'timeout', '60', 'tshark', '-l', '-n', '-i', K.underlayIf, '-c', '300', '-f', `udp dst port ${PORT} and src host ${A.underlay} and greater 1000`,
        '-d', `udp.port==${PORT},vxlan`, '-o', 'udp.check_checksum:TRUE', '-T', 'fields', '-E', 'separator=;', '-E', 'occurrence=f',
        '-e', 'ip.flags.df', '-e', 'udp.checksum.status', '-e', 'vxlan.vni', '-e', 'tcp.checksum.status', '-e', 'frame.len',
      ]);
      await cap.waitForLine(/Capturing on/, 10_000);
      const t0 = await totals(lab, A);
      const t = await lab.transfer(a, k, 32 << 20, { deadlineMs: 120_000 });
      expect(t.match, JSON.stringify(t)).toBe(true);
      await cap.wait(30_000);
      expect(minus(await totals(lab, A), t0).txGsoFrames, 'A sent super-frames whole').toBeGreaterThan(100);
      const rows = cap.lines.map((l) => l.line.split(';')).filter((f) => f.length === 5);
      expect(rows.length).toBe(300);
      for (const f of rows) {
        expect(['0', 'False'], 'outer DF').toContain(f[0]);
        expect(f[1], 'UDP checksum (1: good)').toBe('1');
        expect(f[2], 'VNI').toBe(String(VNI));
        expect(Number(f[4]), 'a wire-sized segment').toBeLessThanOrEqual(14 + 1500);
      }
    } finally {
      if (lab) await lab.destroy();
      else await topo.destroy();
    }
  }, 240_000);
});
