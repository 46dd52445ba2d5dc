/**
 * `userfan up --recv xdp` (root, namespace lab): an XDP program on each host's underlay veth hands
 * IP-in-IP for the host to the workers' AF_XDP sockets before the IP stack. Byte-exact both ways with
 * offloads on and off and with 2 workers (the veth has one RX queue: one socket serves it, the raw
 * sockets take nothing from it); most packets come through XDP; show, stats and `ip link` agree; a
 * worker killed mid-transfer is replaced and its successor takes the queue over; when the daemon stops,
 * the program is gone from the interface. Every lab is destroyed in `finally`.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI, createUserfanLab, startDaemon, UserfanLab, type Daemon } from '../../src/lab/userfan-lab.js';
import { createFanTopology, type Host } from '../../src/lab/topology.js';
import { dist } from '../../src/lab/paths.js';
import { XSK_RING } from '../../src/io/xdp.js';

/** The XDP program attached to the host's underlay interface, as `ip -j link` reports it (undefined: none). */
async function xdpOn(lab: UserfanLab, h: Host): Promise<{ mode: number; prog?: { id: number } } | undefined> {
  const link = JSON.parse((await lab.topo.exec(h, ['ip', '-j', '-d', 'link', 'show', 'dev', h.underlayIf])).stdout)[0];
  return link.xdp;
}

describe.each([['on', 1], ['off', 1], ['on', 2]] as const)('--recv xdp, --offload %s, %i worker(s) per host', (offload, workers) => {
  it('takes IP-in-IP off the underlay through AF_XDP and carries 64 MB byte-exact (and 8 MB back)', async () => {
    // --send raw: the sender's segments are what XDP takes. With the default --send gso a veth carries
    // the other host's TCP super-packets whole, too long for the program, and the kernel takes them.
    const lab = await createUserfanLab({ workers, upArgs: ['--recv', 'xdp', '--send', 'raw', '--offload', offload] });
    try {
      const [A, B] = lab.hosts;
      const [[a], [b]] = lab.containers;
      for (const h of [A, B]) {
        const x = await xdpOn(lab, h);
        expect(x?.mode, `${h.name}: ip link shows an XDP program in generic mode (2)`).toBe(2);
        expect((await lab.show(h))[0].recv).toBe(`xdp on ${h.underlayIf} (1 of 1 RX queue)`);
      }
      const before = (await lab.show(B))[0];
      const ab = await lab.transfer(a, b, 64 << 20, { deadlineMs: 90_000 });
      expect(ab.match, JSON.stringify(ab)).toBe(true);
      const ba = await lab.transfer(b, a, 8 << 20, { deadlineMs: 60_000 });
      expect(ba.match, JSON.stringify(ba)).toBe(true);

      const [sa, sb] = [(await lab.show(A))[0], (await lab.show(B))[0]];
      for (const s of [sa, sb]) expect(s.drops, JSON.stringify(s.dropsByReason)).toBe(0);
      const rx = sb.rxPackets - before.rxPackets;
      const viaXdp = sb.rxXdpPackets - before.rxXdpPackets;
      // Everything for B arrives on the veth's one queue, which B's worker 0 serves: the raw socket gets
      // only what the program leaves to the kernel (nothing, here). rx counts segments as they arrived.
      expect(viaXdp, `${viaXdp} of ${rx} received through AF_XDP`).toBeGreaterThan(rx * 0.99);
      expect(sa.rxXdpPackets).toBeGreaterThan(0);

      const st = JSON.parse((await lab.cli(B, ['stats', '--json', '--interval', '100'])).stdout)[0];
      expect(st.recv).toBe(`xdp on ${B.underlayIf} (1 of 1 RX queue)`);
      expect(st.total.rxXdpPackets).toBe(sb.rxXdpPackets);
      const text = (await lab.cli(B, ['stats', '--interval', '100'])).stdout;
      expect(text).toContain(`AF_XDP receives: ${sb.rxXdpPackets} packets`);

      // explain --from, on the receiving host, says where the packet is taken.
      const ex = JSON.parse((await lab.cli(B, ['explain', b.address, '--from', a.address, '--json'])).stdout);
      expect(ex.steps.join('\n')).toContain('the XDP program on the underlay interface hands it to a worker\'s AF_XDP socket');

      // Stopping the daemon closes the BPF link: the program leaves the interface with it.
      await lab.daemons[1].process.stop(5000);
      expect(await xdpOn(lab, B), 'no XDP program on B after the daemon stopped').toBeUndefined();
      expect(await xdpOn(lab, A), 'A still has its own').toBeDefined();
    } finally {
      await lab.destroy();
    }
  });
});

describe('--recv xdp: faults', () => {
  it('a worker killed mid-transfer is replaced, takes its RX queue over, and the transfer completes byte-exact', async () => {
    const logs: string[] = [];
    const lab = await createUserfanLab({ workers: 1, upArgs: ['--recv', 'xdp', '--send', 'raw'], onLog: (host, line) => logs.push(`${host} ${line}`) });
    try {
      const [, B] = lab.hosts;
      const [[a], [b]] = lab.containers;
      let done = false;
      const transfer = lab.transfer(a, b, 1024 << 20, { deadlineMs: 120_000 }).finally(() => (done = true));
      const deadline = Date.now() + 10_000;
      while (((await lab.show(B))[0].rxXdpPackets ?? 0) < 2000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect((await lab.cli(B, ['debug', 'crash-worker', '0'])).code).toBe(0);
      expect(done, 'the transfer was still running when the worker was killed').toBe(false);
      const t = await transfer;
      expect(t.match, JSON.stringify(t)).toBe(true);
      const replaced = logs.filter((l) => l.startsWith(`${B.name} `) && l.includes('"event":"worker-replaced"'));
      expect(replaced.length).toBe(1);
      // The successor holds the queue again: new traffic comes through XDP.
      const before = (await lab.show(B))[0].rxXdpPackets;
      const again = await lab.transfer(a, b, 8 << 20, { deadlineMs: 60_000 });
      expect(again.match, JSON.stringify(again)).toBe(true);
      expect((await lab.show(B))[0].rxXdpPackets - before).toBeGreaterThan(1000);
    } finally {
      await lab.destroy();
    }
  });
});

describe('--recv xdp: hostile input and a full ring', () => {
  it('every hostile packet taken through XDP is dropped under its reason; frames that find the ring full are counted as rx-xdp-lost', async () => {
    const topo = await createFanTopology({ specs: [{ name: 'A', underlay: '198.18.0.28' }, { name: 'B', underlay: '198.18.0.27' }, { name: 'H', underlay: '198.18.0.99' }] });
    const daemons: Daemon[] = [];
    const lab = new UserfanLab(topo, daemons, []);
    try {
      const [, B, H] = topo.hosts;
      daemons.push(await startDaemon(topo, B, ['-o', '250.0.0.0/8', '-u', B.underlayCidr, '--workers', '2', '--recv', 'xdp']));
      const b = await topo.addContainer(B);
      const rows = async () => (await lab.show(B))[0];
      const hostile = async (count: number, pps: number) => JSON.parse((await topo.exec(H, ['node', dist('src/lab/hostile'), '--self', H.underlay, '--victim', B.underlay, '--container', b.address, '--port', '9999', '--count', String(count), '--pps', String(pps)], { timeoutMs: 60_000 })).stdout);
      /** Waits (≤ 10 s) until the drops under `reasons` have grown by `total` since `before`; returns the growth by reason. */
      const settle = async (before: Record<string, any>, reasons: string[], total: number) => {
        const deadline = Date.now() + 10_000;
        for (;;) {
          const after = await rows();
          const grown = Object.fromEntries(reasons.map((r) => [r, (after.dropsByReason?.[r] ?? 0) - (before.dropsByReason?.[r] ?? 0)]));
          const sum = Object.values(grown).reduce((x: number, y) => x + (y as number), 0);
          if (sum >= total || Date.now() > deadline) return { grown, sum, after };
          await new Promise((r) => setTimeout(r, 50));
        }
      };

      // 24,000 hostile packets, 2,000 of each of the twelve kinds: each lands under its own reason, all through XDP.
      let before = await rows();
      const h1 = await hostile(24_000, 25_000);
      const reasons = Object.keys(h1.expect);
      const r1 = await settle(before, reasons, 24_000);
      expect(r1.grown, JSON.stringify(r1.after.dropsByReason)).toEqual(h1.expect);
      expect(r1.after.rxXdpPackets - before.rxXdpPackets).toBe(24_000);

      // The daemon stopped (SIGSTOP) while 10,000 arrive: the ring holds XSK_RING frames, the kernel loses
      // the rest; once it runs again the workers drop the ring's frames by reason and count the lost ones.
      before = await rows();
      const pid = daemons[0].process.pid!;
      process.kill(pid, 'SIGSTOP');
      let h2;
      try {
        h2 = await hostile(10_000, 100_000);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      const r2 = await settle(before, [...reasons, 'rx-xdp-lost'], 10_000);
      expect(r2.sum, JSON.stringify(r2.grown)).toBe(10_000);
      expect(r2.grown['rx-xdp-lost']).toBe(10_000 - XSK_RING);
      expect(Object.values(h2.sent as Record<string, number>).reduce((x, y) => x + y, 0)).toBe(10_000);
      const st = JSON.parse((await lab.cli(B, ['stats', '--json', '--interval', '100'])).stdout)[0];
      expect(st.perWorker.map((w: { restarts: number }) => w.restarts)).toEqual([0, 0]);
    } finally {
      await lab.destroy();
    }
  });
});

describe('--recv xdp: what the program leaves to the kernel', () => {
  it('IP-in-IP with outer options, and fragmented IP-in-IP, still arrive: through the kernel and the raw socket', async () => {
    const topo = await createFanTopology({ specs: [{ name: 'B', underlay: '198.18.0.27' }, { name: 'H', underlay: '198.18.0.99' }] });
    const daemons: Daemon[] = [];
    const lab = new UserfanLab(topo, daemons, []);
    try {
      const [B, H] = topo.hosts;
      daemons.push(await startDaemon(topo, B, ['-o', '250.0.0.0/8', '-u', B.underlayCidr, '--workers', '1', '--recv', 'xdp']));
      const b = await topo.addContainer(B);
      const listener = topo.spawn(b, ['node', '-e', `const s=require('dgram').createSocket('udp4');const got={opt:0,frag:0};s.on('message',(m)=>{const t=m.toString('latin1');if(t.startsWith('opt ')&&m.length===20)got.opt++;if(t.startsWith('frag ')&&m.length===1900)got.frag++;if(got.opt+got.frag===40)console.log('all '+JSON.stringify(got))});s.bind(9998,()=>console.log('bound'));process.on('SIGTERM',()=>{console.log('got '+JSON.stringify(got));process.exit(0)})`]);
      await listener.waitForLine(/bound/, 5000);
      const before = (await lab.show(B))[0];
      const fixture = fileURLToPath(new URL('../fixtures/ipip-passthrough.mjs', import.meta.url));
      const r = await topo.exec(H, ['node', fixture, dirname(dirname(dirname(CLI))) /* dist/ */, H.underlay, B.underlay, '250.0.99.7', b.address, '9998', '20']);
      expect(JSON.parse(r.stdout)).toEqual({ sent: 60, refused: 0 });
      await listener.waitForLine(/^all /, 10_000);
      const after = (await lab.show(B))[0];
      expect(after.rxPackets - before.rxPackets, 'decapsulated by the worker').toBe(40);
      expect(after.rxXdpPackets - before.rxXdpPackets, 'none of them through XDP').toBe(0);
      expect(after.drops).toBe(before.drops);
      await listener.stop();
      expect(listener.lines.map((l) => l.line)).toContain('got {"opt":20,"frag":20}');
    } finally {
      await lab.destroy();
    }
  });
});

describe('--recv: refused before anything is made', () => {
  it('an unknown receive path exits 2 naming the option and the choices', () => {
    const r = spawnSync('node', [CLI, 'up', '-o', '250.0.0.0/8', '-u', '198.18.0.28/16', '--recv', 'dpdk'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--recv "dpdk": must be raw .* or xdp/);
  });

  it('an interface that already has an XDP program: up says EBUSY and removes what it made', async () => {
    const lab = await createUserfanLab({ workers: 1, upArgs: ['--recv', 'xdp'] });
    try {
      const [A] = lab.hosts;
      // A second fan on the same underlay, in its own daemon: the first daemon's program holds the interface.
      const r = await lab.cli(A, ['up', '-o', '251.0.0.0/8', '-u', A.underlayCidr, '--recv', 'xdp']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`BPF_LINK_CREATE XDP on ${A.underlayIf}: EBUSY`);
      const links = (await lab.topo.exec(A, ['ip', '-o', 'link', 'show'])).stdout;
      expect(links).not.toMatch(/fan-251|uf-251/);
      expect((await lab.show(A)).map((row) => row.overlay)).toEqual(['250.0.0.0/8']);
    } finally {
      await lab.destroy();
    }
  });

  it('an underlay that is not Ethernet (here the namespace\'s loopback) exits 2 and leaves nothing behind', async () => {
    const topo = await createFanTopology();
    try {
      const [A] = topo.hosts;
      await topo.exec(A, ['ip', 'addr', 'add', '198.18.7.1/24', 'dev', 'lo']);
      const r = await topo.exec(A, ['node', CLI, 'up', '-o', '250.1.0.0/16', '-u', '198.18.7.1/24', '--recv', 'xdp'], { allowFail: true });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('--recv "xdp": needs an Ethernet underlay interface; lo is link type 772');
      const links = (await topo.exec(A, ['ip', '-o', 'link', 'show'])).stdout;
      expect(links).not.toMatch(/fan-250-1|uf-250-1/);
    } finally {
      await topo.destroy();
    }
  });
});
