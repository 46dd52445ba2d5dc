/**
 * LXC system containers on the fan (Debian lxc 5, the busybox template, offline; src/lab/lxc.ts): on two lab
 * hosts A (198.18.0.28) and B (198.18.0.27) with `userfan up`, one container each, made by lxc-create with
 * `lxc.net.0.type = veth`, `lxc.net.0.link` the fan's bridge and a static address in the host's slice at the
 * fan's MTU, started by lxc-start in the host's network namespace. Both fan types: IP-in-IP (bridge
 * fan-250-0-28, 250.0.28.2/24, MTU 1480) and VXLAN (bridge fan-250, 250.0.28.2/8, MTU 1450). Each: the
 * container has its address and MTU, ICMP both ways, 16 MiB byte-exact both ways (busybox nc and sha256sum
 * inside the containers). Containers, their cgroups, the daemons and the namespaces go in afterAll.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFanTopology, type FanTopology } from '../../src/lab/topology.js';
import { boxPing, boxRun, boxTransfer, type Box } from '../../src/lab/busybox-box.js';
import { cgroupsStartingWith } from '../../src/lab/cgroups.js';
import { LxcHost, lxcMissing } from '../../src/lab/lxc.js';
import type { ProcessHandle } from '../../src/lab/exec.js';
import { startDaemon } from '../../src/lab/userfan-lab.js';

describe('LXC containers (lxc.net.0.link on the fan bridge) on two lab hosts', () => {
  let topo: FanTopology;
  let top: string;
  const lxc: LxcHost[] = [];
  let fans: ProcessHandle[] = [];
  beforeAll(async () => {
    const missing = lxcMissing();
    if (missing) throw new Error(`cannot run LXC here: ${missing}`);
    topo = await createFanTopology();
    top = mkdtempSync(join(tmpdir(), `${topo.prefix}-lxc-`));
  }, 60_000);
  afterAll(async () => {
    for (const l of lxc) await l.stop();
    for (const f of fans) await f.stop(10_000);
    await topo?.destroy();
    if (top) rmSync(top, { recursive: true, force: true });
  }, 120_000);

  for (const t of ['ipip', 'vxlan'] as const) {
    it(`${t}: static address in the slice at the fan's MTU; ICMP and 16 MiB byte-exact both ways`, async () => {
      const mtu = t === 'vxlan' ? 1450 : 1480;
      const boxes: Box[] = [];
      for (const h of topo.hosts) {
        fans.push((await startDaemon(topo, h, ['-o', '250.0.0.0/8', '-u', h.underlayCidr, '--workers', '1', ...(t === 'vxlan' ? ['--type', 'vxlan'] : [])])).process);
        const l = new LxcHost(topo.lab, h.ns, join(top, `${h.name}-${t}`), `${topo.prefix}-${h.name}${t}`);
        lxc.push(l);
        const address = `${h.slice.network.replace(/0$/, '2')}/${t === 'vxlan' ? 8 : 24}`;
        const name = `${topo.prefix}-${h.name}-${t}`;
        const box = await l.start(name, { link: t === 'vxlan' ? 'fan-250' : h.slice.bridge, address, gateway: h.slice.gateway, mtu });
        expect(await l.state(name)).toBe('RUNNING');
        const inside = await boxRun(box, 'cat /sys/class/net/eth0/mtu; ip -o -4 addr show dev eth0');
        expect(inside.stdout).toMatch(new RegExp(`^${mtu}\\n.*inet ${address.replace(/\./g, '\\.')} `));
        boxes.push(box);
      }
      for (const [from, to] of [[boxes[0], boxes[1]], [boxes[1], boxes[0]]]) {
        const p = await boxPing(from, to.address);
        expect(p.received, `${from.name} -> ${to.address}: ${p.output}`).toBeGreaterThan(0);
      }
      for (const [from, to] of [[boxes[0], boxes[1]], [boxes[1], boxes[0]]]) {
        const x = await boxTransfer(topo.lab, from, to, 16 << 20, { deadlineMs: 60_000 });
        expect(x.match, `${from.name} -> ${to.name}: ${JSON.stringify(x)}`).toBe(true);
      }
      // Containers first (their veths are ports of the fan's bridge), then the fans: down removes the bridges.
      for (const l of lxc.splice(0)) await l.stop();
      for (const f of fans) await f.stop(10_000);
      fans = [];
      for (const h of topo.hosts) expect((await topo.exec(h, ['ip', '-o', 'link', 'show', 'type', 'bridge'])).stdout).toBe('');
      expect(cgroupsStartingWith(`${topo.prefix}-`)).toEqual([]);
    }, 120_000);
  }
});
