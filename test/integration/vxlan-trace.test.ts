/**
 * `userfan trace` for the VXLAN type (root, namespace lab): the pcap holds IPv4 records that tshark
 * decodes as VXLAN on the VXLAN port (outer IPv4 and UDP between the mapped underlay hosts, the VNI, the
 * Ethernet frame with ARP or the echo inside), both ways; a frame dropped on its way out shows with its
 * reason, in VXLAN to 0.0.0.0. And `explain --from` walks a frame through the VXLAN type's steps.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFanTopology, type FanTopology, type Host } from '../../src/lab/topology.js';
import { startDaemon, UserfanLab, type Daemon } from '../../src/lab/userfan-lab.js';
import { dist } from '../../src/lab/paths.js';
import { waitFor } from '../helpers/wait.js';

const VNI = 16384000;
const PORT = 8472;

describe('--type vxlan: trace and explain', () => {
  let topo: FanTopology;
  let lab: UserfanLab;
  const daemons: Daemon[] = [];
  const logs: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'uf-vxtrace-'));

  beforeAll(async () => {
    topo = await createFanTopology();
    const onLog = (host: string, line: string) => logs.push(`${host} ${line}`);
    for (const h of topo.hosts) daemons.push(await startDaemon(topo, h, ['-o', h.slice.overlay, '-u', h.underlayCidr, '--workers', '2', '--type', 'vxlan'], onLog));
    const [A, B] = topo.hosts;
    lab = new UserfanLab(topo, daemons, [[await topo.addContainer(A, { bridge: 'fan-250', prefixLen: 8 })], [await topo.addContainer(B, { bridge: 'fan-250', prefixLen: 8 })]]);
  });
  afterAll(async () => {
    await lab?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Starts `userfan trace ARGS` on a host and resolves once its daemon says the trace is attached. */
  async function startTrace(host: Host, args: string[]) {
    const attached = () => logs.filter((l) => l.startsWith(`${host.name} `) && l.includes('"event":"trace-attached"')).length;
    const before = attached();
    const p = topo.spawn(host, ['node', dist('src/main'), 'trace', ...args]);
    await waitFor('the daemon to attach the trace', () => attached() === before + 1, { timeoutMs: 10_000 });
    return p;
  }

  it('a trace is a pcap tshark decodes as VXLAN: ARP and an echo inside, between the mapped hosts, both ways', async () => {
    const [A, B] = lab.hosts;
    const [[a], [b]] = lab.containers;
    const file = join(dir, 'echo.pcap');
    await topo.exec(a, ['ip', 'neigh', 'flush', 'all']);
    const t = await startTrace(A, ['-w', file, '--count', '4', '--seconds', '10', '--filter', b.address]);
    expect((await topo.ping(a, b.address, { count: 1 })).received).toBe(1);
    await t.wait(15_000);
    expect(t.lines.map((l) => l.line).join('\n')).toMatch(/4 packets written to/);
    const rows = execFileSync('tshark', ['-r', file, '-d', `udp.port==${PORT},vxlan`, '-T', 'fields', '-E', 'separator=;',
      '-e', 'ip.src', '-e', 'ip.dst', '-e', 'ip.flags.df', '-e', 'udp.dstport', '-e', 'vxlan.vni', '-e', 'eth.type', '-e', 'arp.opcode', '-e', 'icmp.type',
      '-e', 'frame.time_epoch'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((l) => l.split(';'))
      .sort((x, y) => Number(x[8]) - Number(y[8])); // in time order: two workers' rings are drained one after the other
    const out = `${A.underlay},${a.address}`;
    const back = `${B.underlay},${b.address}`;
    // ARP request out and its reply in (the outer addresses only: ARP has no IPv4 header), then the echo and its reply.
    expect(rows.map((r) => [r[0], r[3], r[4], r[5], r[6], r[7]])).toEqual([
      [A.underlay, String(PORT), String(VNI), '0x0806', '1', ''],
      [B.underlay, String(PORT), String(VNI), '0x0806', '2', ''],
      [out, String(PORT), String(VNI), '0x0800', '', '8'],
      [back, String(PORT), String(VNI), '0x0800', '', '0'],
    ]);
    for (const r of rows) expect(r[2].split(',')[0], 'outer DF').toMatch(/^(0|False)$/);
  });

  it('a frame dropped on its way out shows with its reason, in VXLAN to 0.0.0.0', async () => {
    const [A] = lab.hosts;
    const [[a]] = lab.containers;
    // 250.0.0.5 lies in the slice of the underlay's network address: no host owns it.
    const t = await startTrace(A, ['--count', '1', '--seconds', '10', '--filter', '250.0.0.5']);
    await topo.exec(a, ['ping', '-c', '1', '-W', '1', '250.0.0.5'], { allowFail: true });
    await t.wait(15_000);
    const line = t.lines.map((l) => l.line).find((l) => l.includes('VXLAN'));
    expect(line).toMatch(new RegExp(`out ${A.underlay.replace(/\./g, '\\.')} > 0\\.0\\.0\\.0 UDP VXLAN ${VNI} \\| ARP who-has 250\\.0\\.0\\.5 tell ${a.address.replace(/\./g, '\\.')}  DROPPED tx-no-underlay-host`));
  });

  it('explain --from walks a frame: ARP target or IPv4 destination, the remote host, the UDP datagram', async () => {
    const [A, B] = lab.hosts;
    const [[a], [b]] = lab.containers;
    const r = await lab.cli(A, ['explain', b.address, '--from', a.address, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const e = JSON.parse(r.stdout);
    expect([e.underlayHost, e.slice, e.bridge, e.local]).toEqual([B.underlay, '250.0.27.0/24', 'fan-250', false]);
    expect(e.outer).toEqual({ source: A.underlay, destination: B.underlay, protocol: 17, port: PORT, vni: VNI });
    // ARP first → bridge → TAP → worker maps the target → VXLAN over UDP → the remote worker's checks → its TAP and bridge.
    const order = ['ARP', e.tun, `underlay host ${B.underlay}`, `VNI ${VNI}`, 'TX GSO', `on ${B.underlay}`, 'fan-250', `${b.address} receives`];
    expect(e.steps).toHaveLength(order.length);
    order.forEach((word, k) => expect(e.steps[k]).toContain(word));
    const text = await lab.cli(A, ['explain', b.address]);
    expect(text.stdout).toContain(`on the wire     IPv4 ${A.underlay} > ${B.underlay} UDP 32768-60999 > ${PORT} (the source port a hash of the inner flow), VXLAN VNI ${VNI}`);
  });
});
