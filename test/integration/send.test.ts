/**
 * How `userfan up` sends (root, namespace lab). The default, --send gso: TCP super-packets leave whole
 * (TX GSO, src/underlay/tx-gso.ts) to the other host's MAC through AF_PACKET once the kernel has resolved
 * it, every other packet through the raw socket. Byte-exact both ways, with one and two workers; on the wire
 * the frames are well-formed IP-in-IP (tshark checks the outer header checksum) to the neighbour's MAC;
 * show, stats and the kernel's own neighbour table agree on what was learned. Where the kernel must cut the
 * super-packets (segmentation and checksum offload off on the underlay, as on a NIC without them) the
 * segments on the wire are well-formed IP-in-IP with good outer and inner checksums and consecutive outer
 * IDs. --send raw sends every packet through the raw socket, super-packets cut in user space. Every lab is
 * destroyed in `finally`.
 */
import { describe, expect, it } from 'vitest';
import { createFanTopology } from '../../src/lab/topology.js';
import { expectRefused } from '../helpers/host-state.js';
import { CLI, createUserfanLab, type UserfanLab } from '../../src/lab/userfan-lab.js';
import { Lab } from '../../src/lab/netns.js';
import { poll, waitForValue } from '../helpers/wait.js';

/** Waits (≤ 5 s: the copy is refreshed once a second) until every host's daemon knows `n` neighbours. */
async function neighboursLearned(lab: UserfanLab, n: number): Promise<string[]> {
  const want = `gso (${n} neighbour${n === 1 ? '' : 's'})`;
  let seen: string[] = [];
  await poll(async () => (seen = await Promise.all(lab.hosts.map(async (h) => (await lab.show(h))[0].send as string))).every((s) => s === want), { timeoutMs: 5000, intervalMs: 100 });
  return seen;
}

describe.each([1, 2])('the defaults (--send gso), --offload on, %i worker(s) per host', (workers) => {
  it('learns the other host from the kernel, sends super-packets whole to its MAC and echoes through the raw socket, and carries 32 MB byte-exact (and 8 MB back) as checksummed IP-in-IP', async () => {
    const lab = await createUserfanLab({ workers, upArgs: ['--offload', 'on'] });
    try {
      const [A, B] = lab.hosts;
      const [[a], [b]] = lab.containers;
      // Nothing has gone to B yet: the kernel has no entry for it, so the first packets take the raw
      // socket, and the kernel's ARP for them is what the daemon then copies.
      const ping = await lab.topo.ping(a, b.address, { count: 2 });
      expect(ping.ok, ping.output).toBe(true);
      expect(await neighboursLearned(lab, 1)).toEqual(['gso (1 neighbour)', 'gso (1 neighbour)']);
      const neigh = JSON.parse((await lab.topo.exec(A, ['ip', '-j', 'neigh', 'show', 'dev', A.underlayIf, 'to', B.underlay])).stdout);
      const bMac = JSON.parse((await lab.topo.exec(B, ['ip', '-j', 'link', 'show', 'dev', B.underlayIf])).stdout)[0].address;
      expect(neigh[0]?.lladdr, 'A\'s kernel resolved B').toBe(bMac);
      expect((await lab.show(A))[0].neighbours, 'the daemon\'s copy').toEqual([{ address: B.underlay, mac: bMac }]);
      // Echoes: small packets, through the raw socket although the neighbour is known.
      const beforePing = (await lab.show(A))[0];
      expect((await lab.topo.ping(a, b.address, { count: 5 })).ok).toBe(true);
      const afterPing = (await lab.show(A))[0];
      expect(afterPing.txPackets - beforePing.txPackets).toBeGreaterThanOrEqual(5);
      expect(afterPing.txLinkPackets - beforePing.txLinkPackets, 'no echo went by MAC').toBe(0);

      const capture = lab.topo.spawn(B, [
        'timeout', '60', 'tshark', '-l', '-n', '-i', B.underlayIf, '-c', '200', '-f', `ip proto 4 and src host ${A.underlay}`, '-o', 'ip.check_checksum:TRUE',
        '-T', 'fields', '-E', 'separator=;', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'ip.checksum.status', '-e', 'eth.dst',
      ]);
      await capture.waitForLine(/Capturing on/, 10_000);
      const before = (await lab.show(A))[0];
      const ab = await lab.transfer(a, b, 32 << 20, { deadlineMs: 90_000 });
      expect(ab.match, JSON.stringify(ab)).toBe(true);
      const mid = (await lab.show(A))[0];
      const ba = await lab.transfer(b, a, 8 << 20, { deadlineMs: 60_000 });
      expect(ba.match, JSON.stringify(ba)).toBe(true);
      await capture.wait(20_000);

      const [sa, sb] = [(await lab.show(A))[0], (await lab.show(B))[0]];
      expect(sa.drops, JSON.stringify(sa.dropsByReason)).toBe(0);
      expect(sb.drops, JSON.stringify(sb.dropsByReason)).toBe(0);
      // A → B is the transfer's data: all but the segments TCP sent before it had super-packets go by MAC
      // (counted as the segments the kernel cuts them into). B → A's data went by MAC from B.
      const tx = mid.txPackets - before.txPackets;
      const viaLink = mid.txLinkPackets - before.txLinkPackets;
      // Every byte went in a segment of at most 1440 (the 1480-byte inner MTU less 40 bytes of headers), and
      // all went by MAC but the few TCP sent before the TUN gave super-packets and around its handshake and
      // end: a fixed few dozen (seen 9-55), however long the transfer.
      expect(tx, 'segments A sent').toBeGreaterThanOrEqual(Math.ceil((32 << 20) / 1440));
      expect(tx - viaLink, `${viaLink} of ${tx} sent through AF_PACKET`).toBeLessThanOrEqual(150);
      expect(sb.txLinkPackets).toBeGreaterThan(0);

      // The frames on B's wire: IP-in-IP from A to B, outer checksum good (1), to B's MAC.
      const frames = capture.lines.map((l) => l.line.trim()).filter((l) => /^\d+\.\d+\.\d+\.\d+(,|;)/.test(l));
      expect(frames.length).toBe(200);
      for (const f of frames) {
        const [src, dst, status, ethDst] = f.split(';');
        expect([src.split(',')[0], dst.split(',')[0], status.split(',')[0], ethDst]).toEqual([A.underlay, B.underlay, '1', bMac]);
      }

      const st = JSON.parse((await lab.cli(A, ['stats', '--json', '--interval', '100'])).stdout)[0];
      expect(st.send).toBe('gso (1 neighbour)');
      expect(st.total.txLinkPackets).toBe(sa.txLinkPackets);
      expect(sa.txGso).toBe(`on (${A.underlayIf})`);
      expect(st.total.txGsoFrames, 'super-packets sent whole').toBeGreaterThan(100);

      const ex = JSON.parse((await lab.cli(A, ['explain', b.address, '--from', a.address, '--json'])).stdout);
      expect(ex.steps.join('\n')).toContain('a TCP super-packet instead leaves whole through an AF_PACKET socket');
    } finally {
      await lab.destroy();
    }
  });
});

describe('TX GSO where the kernel must cut the super-packets', () => {
  it('puts well-formed IP-in-IP segments on the wire (outer and inner checksums good, consecutive outer IDs) and carries 32 MB byte-exact', async () => {
    const lab = await createUserfanLab({ workers: 1, upArgs: ['--offload', 'on'] });
    try {
      const [A, B] = lab.hosts;
      const [[a], [b]] = lab.containers;
      // As on a NIC without IP-in-IP segmentation or checksum offload: the kernel cuts and sums in software.
      await lab.topo.exec(A, ['ethtool', '-K', A.underlayIf, 'tx-ipxip4-segmentation', 'off', 'tx', 'off']);
      expect((await lab.topo.ping(a, b.address, { count: 2 })).ok).toBe(true);
      expect(await neighboursLearned(lab, 1)).toEqual(['gso (1 neighbour)', 'gso (1 neighbour)']);
      const capture = lab.topo.spawn(B, [
        'timeout', '60', 'tshark', '-l', '-n', '-i', B.underlayIf, '-c', '300', '-f', `ip proto 4 and src host ${A.underlay} and greater 1000`,
        '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE',
        '-T', 'fields', '-E', 'separator=;', '-e', 'frame.len', '-e', 'ip.id', '-e', 'ip.checksum.status', '-e', 'tcp.checksum.status',
      ]);
      await capture.waitForLine(/Capturing on/, 10_000);
      const before = (await lab.show(A))[0];
      const ab = await lab.transfer(a, b, 32 << 20, { deadlineMs: 90_000 });
      expect(ab.match, JSON.stringify(ab)).toBe(true);
      await capture.wait(20_000);
      const [sa, sb] = [(await lab.show(A))[0], (await lab.show(B))[0]];
      expect(sa.txGso).toBe(`on (${A.underlayIf})`);
      expect(sb.drops, JSON.stringify(sb.dropsByReason)).toBe(0);
      const st = JSON.parse((await lab.cli(A, ['stats', '--json', '--interval', '100'])).stdout)[0];
      expect(st.total.txGsoFrames).toBeGreaterThan(100);
      expect(sa.txPackets - before.txPackets).toBeGreaterThan(20_000); // segments: 32 MB / 1440 B

      const frames = capture.lines.map((l) => l.line.trim()).filter((l) => /^\d+;/.test(l)).map((l) => l.split(';'));
      expect(frames.length).toBe(300);
      const outerIds: number[] = [];
      for (const [len, ids, ipStatus, tcpStatus] of frames) {
        expect(Number(len), 'a segment, not a super-packet').toBeLessThanOrEqual(1514);
        expect(ipStatus.split(','), 'outer and inner IPv4 header checksums').toEqual(['1', '1']);
        expect(tcpStatus, 'inner TCP checksum').toBe('1');
        outerIds.push(parseInt(ids.split(',')[0], 16));
      }
      // The kernel numbers a super-packet's segments on from userfan's ID, which moves on by as many.
      const steps = outerIds.slice(1).filter((id, i) => id === ((outerIds[i] + 1) & 0xffff)).length;
      expect(steps, `outer IDs ${outerIds.slice(0, 12).join(' ')} …`).toBeGreaterThan(0.9 * (outerIds.length - 1));
    } finally {
      await lab.destroy();
    }
  });
});

describe('the neighbour copy after a miss (the defaults, --send gso)', () => {
  it('copies a new host from the kernel as soon as a lookup misses, without waiting for the refresh, and a transfer to it then leaves whole', async () => {
    const logs: string[] = [];
    // The refresh is an hour here: only a copy after a miss can learn B (the start's copy finds nothing).
    const lab = await createUserfanLab({ workers: 1, env: { USERFAN_NEIGHBOUR_REFRESH_MS: '3600000' }, onLog: (h, l) => logs.push(`${h} ${l}`) });
    try {
      const [A] = lab.hosts;
      const [[a], [b]] = lab.containers;
      // The echoes make the kernel resolve B. Only what could leave by MAC is looked up (a TCP super-packet
      // with TX GSO): a first transfer's super-packets miss in the empty copy and go through the raw socket,
      // and that miss is what makes the daemon copy the kernel's table.
      const ping = await lab.topo.ping(a, b.address, { count: 3 });
      expect(ping.ok, ping.output).toBe(true);
      const first = await lab.transfer(a, b, 4 << 20);
      expect(first.match, JSON.stringify(first)).toBe(true);
      const send = await waitForValue('A to learn B', async () => (await lab.show(A))[0].send as string, (s) => s === 'gso (1 neighbour)', { timeoutMs: 5000, intervalMs: 50 }).catch((e: Error) => e.message);
      expect(send).toBe('gso (1 neighbour)');
      // The human-readable show says it too, under the fanctl-like table.
      expect((await lab.cli(A, ['show'])).stdout).toContain(`: send gso (1 neighbour), TX GSO on (${A.underlayIf}); TUN offloads on`);
      const learned = logs.filter((l) => l.startsWith(`${A.name} `) && l.includes('"event":"neighbours"'));
      expect(learned.length, learned.join('\n')).toBeGreaterThan(0);
      expect(JSON.parse(learned[0].slice(A.name.length + 1))).toMatchObject({ count: 1, after: 'miss' });
      const t = await lab.transfer(a, b, 16 << 20);
      expect(t.match, JSON.stringify(t)).toBe(true);
      const st = JSON.parse((await lab.cli(A, ['stats', '--json', '--interval', '100'])).stdout)[0];
      expect(st.total.txGsoFrames, 'super-packets left whole').toBeGreaterThan(0);
    } finally {
      await lab.destroy();
    }
  });
});

describe('--send raw', () => {
  it('sends every packet through the raw socket, super-packets cut in user space, although the neighbour is known; show says so', async () => {
    const lab = await createUserfanLab({ workers: 1, upArgs: ['--send', 'raw', '--offload', 'on'] });
    try {
      const [A, B] = lab.hosts;
      const [[a], [b]] = lab.containers;
      expect((await lab.topo.ping(a, b.address, { count: 2 })).ok).toBe(true);
      const ab = await lab.transfer(a, b, 8 << 20, { deadlineMs: 60_000 });
      expect(ab.match, JSON.stringify(ab)).toBe(true);
      const neigh = JSON.parse((await lab.topo.exec(A, ['ip', '-j', 'neigh', 'show', 'dev', A.underlayIf, 'to', B.underlay])).stdout);
      expect(neigh[0]?.lladdr, 'A\'s kernel resolved B').toBeTruthy();
      const sa = (await lab.show(A))[0];
      expect([sa.send, sa.txGso]).toEqual(['raw', null]);
      const st = JSON.parse((await lab.cli(A, ['stats', '--json', '--interval', '100'])).stdout)[0];
      expect(st.total.txGsoFrames).toBe(0);
      expect(st.total.txLinkPackets).toBe(0);
      expect(st.total.txPackets).toBeGreaterThan(5000); // 8 MB in 1440-byte segments, cut in user space
    } finally {
      await lab.destroy();
    }
  });
});

describe('TX GSO refused', () => {
  it('on an underlay without an Ethernet address: the daemon comes up, cuts in user space, and show says why', async () => {
    const lab = await Lab.create();
    try {
      const ns = await lab.addNamespace('L3');
      const ul = lab.ifName('u');
      // An L3 underlay (a TUN device, kept up by a process holding it): no MAC for the frame's header.
      const hold = `import fcntl,os,struct,time;fd=os.open('/dev/net/tun',os.O_RDWR);fcntl.ioctl(fd,0x400454ca,struct.pack('16sH',b'${ul}',0x1001));print('held',flush=True);time.sleep(60)`;
      const holder = lab.spawn(ns, ['python3', '-c', hold]);
      await holder.waitForLine(/held/, 10_000);
      await lab.exec(ns, ['ip', 'addr', 'add', '198.18.0.28/16', 'dev', ul]);
      await lab.exec(ns, ['ip', 'link', 'set', ul, 'up']);
      const daemon = lab.spawn(ns, [process.execPath, CLI, 'up', '-o', '250.0.0.0/8', '-u', '198.18.0.28/16', '--workers', '1']);
      await daemon.waitForLine(/"event":"ready"/, 15_000);
      const refused = daemon.lines.map((l) => l.line).find((l) => l.includes('"tx-gso-off"'));
      expect(refused).toMatch(new RegExp(`TX GSO: ${ul} has no Ethernet address`));
      const row = JSON.parse((await lab.exec(ns, [process.execPath, CLI, 'show', '--json'])).stdout)[0];
      expect([row.offload, row.send, row.txGso]).toEqual(['on', 'raw (gso without TX GSO)', `off (TX GSO: ${ul} has no Ethernet address (none))`]);
      await daemon.stop(10_000);
      expect(daemon.exitCode).toBe(0);
    } finally {
      await lab.destroy();
    }
  });
});

describe('TX GSO when a neighbour\'s MAC changes', () => {
  it('follows the kernel: once A\'s kernel has B\'s new MAC, packets go to it within a refresh', async () => {
    const lab = await createUserfanLab({ workers: 1, upArgs: ['--offload', 'on'] });
    try {
      const [A, B] = lab.hosts;
      const [[a], [b]] = lab.containers;
      expect((await lab.topo.ping(a, b.address, { count: 2 })).ok).toBe(true);
      expect(await neighboursLearned(lab, 1)).toEqual(['gso (1 neighbour)', 'gso (1 neighbour)']);
      const newMac = '02:75:66:00:00:27';
      await lab.topo.exec(B, ['ip', 'link', 'set', 'dev', B.underlayIf, 'address', newMac]);
      // B comes back as a replaced host does: it asks for A (an ARP request carries B's new MAC), and A's
      // kernel takes the new MAC from it. userfan copies it at its next refresh (≤ 1 s).
      await lab.topo.exec(B, ['ip', 'neigh', 'flush', 'dev', B.underlayIf]);
      await lab.topo.exec(B, ['ping', '-c', '1', '-W', '2', A.underlay]);
      const neigh = JSON.parse((await lab.topo.exec(A, ['ip', '-j', 'neigh', 'show', 'dev', A.underlayIf, 'to', B.underlay])).stdout);
      expect(neigh[0]?.lladdr, 'A\'s kernel learned the new MAC').toBe(newMac);
      // Within a refresh (≤ 1 s) the daemon's copy has it too.
      const macsOf = async () => ((await lab.show(A))[0].neighbours ?? []).map((n: { mac: string }) => n.mac) as string[];
      const macs = await waitForValue("the daemon's copy to have B's new MAC", macsOf, (m) => m.includes(newMac), { timeoutMs: 5000, intervalMs: 100 }).catch(macsOf);
      expect(macs).toEqual([newMac]);
      const r = await lab.topo.exec(a, ['ping', '-c', '1', '-w', '5', '-i', '0.05', b.address], { timeoutMs: 10_000, allowFail: true });
      expect(r.code, r.stdout).toBe(0);
      const before = (await lab.show(A))[0];
      const ab = await lab.transfer(a, b, 8 << 20, { deadlineMs: 60_000 });
      expect(ab.match, JSON.stringify(ab)).toBe(true);
      const after = (await lab.show(A))[0];
      const tx = after.txPackets - before.txPackets;
      const viaLink = after.txLinkPackets - before.txLinkPackets;
      // As above: every byte in segments of at most 1440, all by MAC but a few dozen (seen 9-55).
      expect(tx, 'segments A sent').toBeGreaterThanOrEqual(Math.ceil((8 << 20) / 1440));
      expect(tx - viaLink, `${viaLink} of ${tx} sent through AF_PACKET`).toBeLessThanOrEqual(150);
    } finally {
      await lab.destroy();
    }
  });
});

describe('--send', () => {
  it('refuses a value other than gso or raw before it creates anything', async () => {
    const topo = await createFanTopology();
    try {
      const [A] = topo.hosts;
      await expectRefused(topo, A, ['up', '-o', '250.0.0.0/8', '-u', A.underlayCidr, '--send', 'dpdk'], /^userfan up: --send "dpdk": must be gso .* or raw/);
    } finally {
      await topo.destroy();
    }
  });
});
