/**
 * A real CNI client, podman 4.3 with its CNI backend, against the userfan plugin on two lab hosts A
 * (198.18.0.28) and B (198.18.0.27), each with `userfan up`, the plugin installed by `userfan cni install`
 * into a directory of its own with the network configuration it printed, and a podman whose storage,
 * state and configuration live under a temporary directory (src/lab/podman.ts):
 * - `podman run --network <it>` puts a busybox container on each host's fan: an address of the host's
 *   slice, MTU 1480, the default route via the slice's .1;
 * - the containers ping each other across the hosts, and 64 MiB go byte-exact each way between them
 *   (busybox nc, sha256sum at both ends);
 * - `podman rm` runs the plugin's DEL: both address pools are empty, no container link is left on the
 *   fan bridges and no podman namespace is left.
 * Containers, storage mounts, cgroups, namespaces and files go in afterAll, also after a failure.
 */
import { mkdirSync, mkdtempSync, readdirSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFanTopology, type FanTopology, type Host } from '../../src/lab/topology.js';
import { busyboxRootfsTar } from '../../src/lab/dockerd.js';
import { podmanHost, podmanMissing, type PodmanHost } from '../../src/lab/podman.js';
import { CLI, startDaemon, type Daemon } from '../../src/lab/userfan-lab.js';
import { waitForValue } from '../helpers/wait.js';

const IMAGE = 'localhost/userfan-busybox:test';
const BYTES = 64 * 1024 * 1024;

interface Side {
  host: Host;
  dir: string;
  daemon?: Daemon;
  pm?: PodmanHost;
  name?: string;
  address?: string;
}

describe('podman (CNI backend) with the userfan plugin on two lab hosts', () => {
  let topo: FanTopology;
  let top: string;
  let net: string;
  const sides: Side[] = [];

  beforeAll(async () => {
    const missing = podmanMissing();
    if (missing) throw new Error(`cannot run podman here: ${missing}`);
    topo = await createFanTopology();
    net = `${topo.prefix}net`;
    top = mkdtempSync(join(tmpdir(), `${topo.prefix}-podman-`));
    const tar = await busyboxRootfsTar(top);
    for (const host of topo.hosts) {
      const s: Side = { host, dir: join(top, host.name) };
      sides.push(s);
      mkdirSync(s.dir);
      s.daemon = await startDaemon(topo, host, ['-o', '250.0.0.0/8', '-u', host.underlayCidr, '--workers', '1']);
      const inst = await topo.exec(undefined, [process.execPath, CLI, 'cni', 'install', '--dir', join(s.dir, 'bin'), '--conf-dir', join(s.dir, 'net'), '--name', net, '--data-dir', join(s.dir, 'cni')], { allowFail: true });
      if (inst.code !== 0) throw new Error(`userfan cni install failed: ${inst.stderr}`);
      s.pm = podmanHost(host.ns, join(s.dir, 'podman'), { pluginDirs: [join(s.dir, 'bin'), '/usr/lib/cni'], configDir: join(s.dir, 'net'), name: `${topo.prefix}-${host.name}` });
      const imp = await s.pm.podman(['import', tar, IMAGE], 120_000);
      if (imp.code !== 0) throw new Error(`podman import on ${host.name} failed: ${imp.stderr}`);
    }
  }, 180_000);
  afterAll(async () => {
    for (const s of sides) await s.pm?.stop().catch(() => undefined);
    for (const s of sides) await s.daemon?.process.stop(10_000);
    await topo?.destroy();
    if (top) rmSync(top, { recursive: true, force: true });
  }, 180_000);

  const exec = (s: Side, cmd: string, timeoutMs = 60_000) => s.pm!.podman(['exec', s.name!, 'sh', '-c', cmd], timeoutMs);
  /** The host's userfan byte counters (stats --json, inner bytes): the data went through the fan, not around it. */
  const counters = async (s: Side) => {
    const r = await topo.exec(s.host, [process.execPath, CLI, 'stats', '--json', '--interval', '100']);
    const [d] = JSON.parse(r.stdout) as { total: { txBytes: number; rxBytes: number } }[];
    return d.total;
  };

  it('podman run --network puts a container on each host\'s fan: slice address, MTU 1480, default route via .1', async () => {
    for (const s of sides) {
      s.name = await s.pm!.runDetached(`${topo.prefix}-${s.host.name.toLowerCase()}`, IMAGE, net, ['sleep', '600']);
      const addr = await exec(s, 'ip -o -4 addr show dev eth0');
      const m = /inet (250\.0\.\d+\.\d+)\/24/.exec(addr.stdout);
      expect(m, addr.stdout + addr.stderr).not.toBeNull();
      s.address = m![1];
      const prefix = s.host.slice.network.split('.').slice(0, 3).join('.');
      expect(s.address.startsWith(`${prefix}.`) && s.address !== s.host.slice.gateway).toBe(true);
      expect((await exec(s, 'cat /sys/class/net/eth0/mtu')).stdout.trim()).toBe('1480');
      expect((await exec(s, 'ip route show default')).stdout).toMatch(new RegExp(`^default via ${s.host.slice.gateway.replace(/\./g, '\\.')} dev eth0`));
    }
    expect(sides[0].address).not.toBe(sides[1].address);
  }, 120_000);

  it('the containers ping each other across the hosts', async () => {
    for (const [from, to] of [[sides[0], sides[1]], [sides[1], sides[0]]]) {
      const r = await exec(from, `ping -c 3 -W 2 ${to.address}`, 30_000);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/3 packets transmitted, [1-3] packets received/);
    }
  }, 60_000);

  it('64 MiB go byte-exact from A\'s container to B\'s and back', async () => {
    for (const [from, to, port] of [[sides[0], sides[1], 7001], [sides[1], sides[0], 7002]] as const) {
      const made = await exec(from, `head -c ${BYTES} /dev/urandom > /tmp/blob && sha256sum /tmp/blob`, 60_000);
      expect(made.code, made.stderr).toBe(0);
      const want = made.stdout.split(/\s+/)[0];
      // busybox nc closes when its own input ends: the sleep keeps the receiver's open.
      const listen = await to.pm!.podman(['exec', '-d', to.name!, 'sh', '-c', `sleep 120 | nc -l -p ${port} > /tmp/got`]);
      expect(listen.code, listen.stderr).toBe(0);
      const [tx0, rx0] = [(await counters(from)).txBytes, (await counters(to)).rxBytes];
      const send = await exec(from, `for i in 1 2 3 4 5 6 7 8 9 10; do nc ${to.address} ${port} < /tmp/blob && exit 0; sleep 0.5; done; exit 1`, 90_000);
      expect(send.code, send.stderr).toBe(0);
      const size = await waitForValue(`${to.host.name}'s receiver to have all bytes`, async () => Number((await exec(to, 'wc -c < /tmp/got')).stdout.trim()), (n) => n >= BYTES, { timeoutMs: 30_000, intervalMs: 200 });
      expect(size).toBe(BYTES);
      expect((await exec(to, 'sha256sum /tmp/got')).stdout.split(/\s+/)[0]).toBe(want);
      // The 64 MiB (and their headers) left the sender's userfan and came out of the receiver's.
      expect((await counters(from)).txBytes - tx0).toBeGreaterThan(BYTES);
      expect((await counters(to)).rxBytes - rx0).toBeGreaterThan(BYTES);
      await exec(from, 'rm /tmp/blob');
    }
  }, 240_000);

  it('podman rm runs the plugin\'s DEL: address pools empty, no container link on the bridges, no podman namespace left', async () => {
    for (const s of sides) {
      const inspect = await s.pm!.podman(['inspect', '--format', '{{.NetworkSettings.SandboxKey}}', s.name!]);
      const key = inspect.stdout.trim();
      expect(key).toMatch(/^\/run\/netns\/netns-[0-9a-f-]+$/);
      expect(existsSync(key)).toBe(true);
      const r = await s.pm!.podman(['rm', '-f', '-t', '0', s.name!]);
      expect(r.code, r.stderr).toBe(0);
      const pool = join(s.dir, 'cni', 'ipam', net);
      expect(existsSync(pool) ? readdirSync(pool).filter((n) => /^\d+\./.test(n)) : []).toEqual([]);
      expect(readdirSync(join(s.dir, 'cni', 'attachments', net))).toEqual([]);
      const ports = await topo.exec(s.host, ['ip', '-o', 'link', 'show', 'master', s.host.slice.bridge]);
      expect(ports.stdout.trim()).toBe('');
      expect(existsSync(key)).toBe(false);
    }
  }, 60_000);
});
