/**
 * A host without TUN offloads receiving super-packets (root, namespace lab). Host A sends with the
 * defaults: TX GSO hands the kernel whole IP-in-IP super-packets, which a veth carries whole to host B.
 * B runs `--offload off`: its TUN takes only packets of at most the MTU with finished checksums, so B's
 * TUN device must finish each one's checksum and cut it (src/tun/device.ts). Byte-exact both ways.
 */
import { describe, expect, it } from 'vitest';
import { createFanTopology } from '../../src/lab/topology.js';
import { startDaemon, UserfanLab } from '../../src/lab/userfan-lab.js';

describe('a host with --offload off behind a veth', () => {
  it('takes whole super-packets from a TX GSO sender, cuts them, and the transfer is byte-exact', async () => {
    const topo = await createFanTopology();
    let lab: UserfanLab | undefined;
    try {
      const [A, B] = topo.hosts;
      const da = await startDaemon(topo, A, ['-o', A.slice.overlay, '-u', A.underlayCidr, '--workers', '1']);
      const db = await startDaemon(topo, B, ['-o', B.slice.overlay, '-u', B.underlayCidr, '--workers', '1', '--offload', 'off']);
      const [a, b] = [await topo.addContainer(A), await topo.addContainer(B)];
      lab = new UserfanLab(topo, [da, db], [[a], [b]]);
      expect((await topo.ping(a, b.address, { count: 2 })).received).toBe(2);
      const before = JSON.parse((await lab.cli(B, ['stats', '--json', '--interval', '100'])).stdout)[0].total;
      const t = await lab.transfer(a, b, 32 << 20, { deadlineMs: 90_000 });
      expect(t.match, JSON.stringify(t)).toBe(true);
      const back = await lab.transfer(b, a, 8 << 20, { deadlineMs: 60_000 });
      expect(back.match, JSON.stringify(back)).toBe(true);
      const [sa, sb] = [(await lab.show(A))[0], JSON.parse((await lab.cli(B, ['stats', '--json', '--interval', '100'])).stdout)[0].total];
      expect(sa.txGso, 'A sent super-packets whole').toMatch(/^on/);
      // What B received was mostly whole super-packets: more inner bytes per packet than its MTU (1480) holds.
      expect((sb.rxBytes - before.rxBytes) / (sb.rxPackets - before.rxPackets)).toBeGreaterThan(1480);
      expect(sb.dropsTotal, JSON.stringify(sb.drops)).toBe(0);
    } finally {
      if (lab) await lab.destroy();
      else await topo.destroy();
    }
  }, 180_000);
});
