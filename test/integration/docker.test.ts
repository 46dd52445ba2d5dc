/**
 * enable-docker, test local-docker and disable-docker against a real dockerd (issue 24), on two lab hosts
 * A (198.18.0.28) and B (198.18.0.27), each with a daemon.json, a config file and a dockerd of its own
 * under a temporary directory (src/lab/dockerd.ts):
 * - enable-docker refuses a daemon.json that is not JSON with one line, changing nothing; then merges
 *   `bridge` and `mtu` into each host's daemon.json and makes the fan persistent as a 0.12 line;
 * - `up -a` on that config brings the fan up; dockerd started with that daemon.json puts its containers in
 *   the host's slice at MTU 1480, and they ping each other across the hosts;
 * - `userfan test local-docker` passes on A;
 * - disable-docker puts both daemon.json back byte for byte and removes the config line (and file);
 *   a dockerd restarted on B with its restored daemon.json (`"bridge": "none"`) fails test local-docker.
 * Every dockerd, container, mount, cgroup, namespace and file goes in afterAll, also after a failure.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFanTopology, type FanTopology, type Host } from '../../src/lab/topology.js';
import { busyboxRootfsTar, dockerMissing, startDockerd, type Dockerd } from '../../src/lab/dockerd.js';
import { boxPing, boxTransfer, type Box } from '../../src/lab/busybox-box.js';
import { cgroupsStartingWith } from '../../src/lab/cgroups.js';
import { run, type ProcessHandle } from '../../src/lab/exec.js';
import { CLI, startDaemon } from '../../src/lab/userfan-lab.js';

const IMAGE = 'userfan-busybox:test';

interface Side {
  host: Host;
  dir: string;
  daemonJson: string;
  config: string;
  original: Buffer;
  fan?: ProcessHandle;
  dockerd?: Dockerd;
}

describe('enable-docker with a real dockerd on two lab hosts', () => {
  let topo: FanTopology;
  let top: string;
  let tar: string;
  const sides: Side[] = [];
  beforeAll(async () => {
    const missing = dockerMissing();
    if (missing) throw new Error(`cannot run Docker here: ${missing}`);
    topo = await createFanTopology();
    top = mkdtempSync(join(tmpdir(), `${topo.prefix}-docker-`));
    tar = await busyboxRootfsTar(top);
    for (const host of topo.hosts) {
      const dir = join(top, host.name);
      const daemonJson = join(dir, 'daemon.json');
      // A's: tabs and no final newline; B's: a "bridge" that enable-docker replaces and disable-docker puts back.
      // Both keep dockerd's trust key here (dockerd 20.10 has no flag for it; it would go to /etc/docker).
      const key = JSON.stringify(join(dir, 'key.json'));
      const original = Buffer.from(host.name === 'A'
        ? `{\n\t"deprecated-key-path": ${key},\n\t"log-level": "warn"\n}`
        : `{"deprecated-key-path": ${key}, "bridge": "none", "log-level": "warn"}\n`);
      mkdirSync(dir);
      sides.push({ host, dir, daemonJson, config: join(dir, 'fan'), original });
    }
  }, 120_000);
  afterAll(async () => {
    for (const s of sides) await s.dockerd?.stop().catch(() => undefined);
    for (const s of sides) await s.fan?.stop(10_000);
    await topo?.destroy();
    if (top) rmSync(top, { recursive: true, force: true });
  }, 180_000);

  const userfan = (s: Side, args: string[], timeoutMs = 30_000) => topo.exec(s.host, [process.execPath, CLI, ...args], { allowFail: true, timeoutMs });
  const enableArgs = (s: Side) => ['-u', s.host.underlayCidr, '-o', '250.0.0.0/8', '--config', s.config, '--daemon-json', s.daemonJson];

  it('enable-docker refuses a daemon.json that is not JSON (one line, nothing changed), then merges bridge and mtu', async () => {
    const [A] = sides;
    writeFileSync(A.daemonJson, '{"log-level": "warn",}');
    const bad = await userfan(A, ['enable-docker', ...enableArgs(A)]);
    expect(bad.code, bad.stderr + bad.stdout).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr.trim()).toMatch(/^userfan enable-docker: --daemon-json ".*daemon\.json": is not valid JSON \(.*\): fix it or move it away; nothing was changed$/);
    expect(readFileSync(A.daemonJson, 'utf8')).toBe('{"log-level": "warn",}');
    expect(existsSync(A.config) || existsSync(`${A.daemonJson}.userfan-backup`) || existsSync(`${A.daemonJson}.userfan`)).toBe(false);

    for (const s of sides) {
      writeFileSync(s.daemonJson, s.original);
      const r = await userfan(s, ['enable-docker', ...enableArgs(s)]);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(r.stdout).toMatch(/now restart Docker/);
      const json = JSON.parse(readFileSync(s.daemonJson, 'utf8'));
      expect(json).toMatchObject({ ...JSON.parse(s.original.toString()), bridge: s.host.slice.bridge, mtu: 1480 });
      expect(readFileSync(`${s.daemonJson}.userfan-backup`)).toEqual(s.original);
      expect(readFileSync(s.config, 'utf8')).toBe(`${s.host.underlayCidr} 250.0.0.0/8 --enable  # userfan enable-docker\n`);
    }
  });

  it('up -a brings the fan up; dockerd with that daemon.json puts containers on it; ICMP across the hosts', async () => {
    const addrs: string[] = [];
    for (const s of sides) {
      s.fan = topo.spawn(s.host, [process.execPath, CLI, 'up', '-a', '--config', s.config, '--workers', '1']);
      await s.fan.waitForLine(/"event":"ready"/, 20_000);
      s.dockerd = await startDockerd(topo.lab, s.host.ns, join(s.dir, 'docker'), s.daemonJson, `${topo.prefix}-docker-${s.host.name}`);
      const imp = await s.dockerd.docker(['import', tar, IMAGE]);
      expect(imp.code, imp.stderr).toBe(0);
      const run = await s.dockerd.docker(['run', '-d', '--rm', '--name', 'c1', IMAGE, 'sleep', '120']);
      expect(run.code, run.stderr).toBe(0);
      const ip = (await s.dockerd.docker(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', 'c1'])).stdout.trim();
      expect(ip.startsWith(s.host.slice.network.replace(/0$/, ''))).toBe(true); // in 250.0.28.0/24 on A, 250.0.27.0/24 on B
      expect((await s.dockerd.docker(['exec', 'c1', 'cat', '/sys/class/net/eth0/mtu'])).stdout.trim()).toBe('1480');
      addrs.push(ip);
    }
    // At least one echo answered each way (busybox ping exits 0 then): the kernel's neighbour table is shared
    // by every namespace on the machine, and a big lab running beside this one can fill it and drop a few.
    for (const [i, s] of sides.entries()) {
      const p = await s.dockerd!.docker(['exec', 'c1', 'ping', '-c', '5', '-W', '2', addrs[1 - i]], 30_000);
      expect(p.code, p.stdout + p.stderr).toBe(0);
      expect(p.stdout).toMatch(new RegExp(`bytes from ${addrs[1 - i].replace(/\./g, '\\.')}: seq=\\d+ ttl=62 `));
    }
  });

  it('userfan test local-docker passes on A', async () => {
    const [A] = sides;
    const r = await userfan(A, ['test', 'local-docker', '-H', A.dockerd!.host, '--image', IMAGE], 180_000);
    const lines = r.stdout.trim().split('\n');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(lines.at(-1)).toMatch(/^local docker test: PASS \(250\.0\.0\.0\/8 over 198\.18\.0\.0\/16, bridge fan-250-0-28: 250\.0\.28\.\d+ and 250\.0\.28\.\d+ ping and carry 1048576 bytes intact\)$/);
    expect(r.stdout).toMatch(/ping 250\.0\.28\.\d+ -> 250\.0\.28\.1 \(the bridge\): ok/);
  });

  it('disable-docker restores daemon.json byte for byte and removes the config line; test local-docker then fails', async () => {
    for (const s of sides) {
      await s.dockerd!.stop();
      s.dockerd = undefined;
      const r = await userfan(s, ['disable-docker', '-u', s.host.underlayCidr, '-o', '250.0.0.0/8', '--daemon-json', s.daemonJson]);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(readFileSync(s.daemonJson)).toEqual(s.original);
      expect(existsSync(s.config)).toBe(false); // enable-docker made it; nothing else was in it
      expect(existsSync(`${s.daemonJson}.userfan-backup`) || existsSync(`${s.daemonJson}.userfan`)).toBe(false);
    }
    const B = sides[1];
    B.dockerd = await startDockerd(topo.lab, B.host.ns, join(B.dir, 'docker'), B.daemonJson, `${topo.prefix}-docker-B`);
    expect((await B.dockerd.docker(['import', tar, IMAGE])).code).toBe(0);
    const r = await userfan(B, ['test', 'local-docker', '-H', B.dockerd.host, '--image', IMAGE], 180_000);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout.trim().split('\n').at(-1)).toMatch(/^local docker test: FAIL: .*Docker is not on the fan/);
    expect((await B.dockerd.docker(['ps', '-aq'])).stdout.trim()).toBe(''); // its containers are gone
  });
});

/**
 * The README's two ways onto a fan, each with both fan types, on one pair of lab hosts A (198.18.0.28) and
 * B (198.18.0.27), a real dockerd on each (src/lab/dockerd.ts), busybox containers:
 * - way 1: `userfan up`, then `dockerd --bridge BRIDGE --mtu MTU` (VXLAN: bridge fan-250, `--fixed-cidr` the
 *   slice): Docker's default network is the fan's bridge;
 * - way 2: `docker network create -d bridge --subnet SLICE --gateway SLICE.1
 *   -o com.docker.network.bridge.name=fan-250-0-28 -o com.docker.network.driver.mtu=MTU fan`, then
 *   `userfan up … --bridge fan-250-0-28`: userfan adopts Docker's bridge, says so in show, leaves it at down.
 * Each: the container's address is in its host's slice at the fan's MTU, ICMP both ways, 64 MiB byte-exact
 * both ways (busybox's nc and sha256sum in the containers: src/lab/busybox-box.ts); after down no TUN, route,
 * nft table or state is left, and no bridge userfan made (the adopted one stays while Docker owns it, also
 * after kill -9 and down). Then real Docker bridges userfan must refuse. Last, nothing of the lab is left.
 */
describe('Docker both ways (README), both fan types, real dockerd on two lab hosts', () => {
  const MiB64 = 64 << 20;
  let topo: FanTopology;
  let top: string;
  let tar: string;
  interface Way { host: Host; dir: string; plainJson: string; noBridgeJson: string; dockerd?: Dockerd; dockerKind?: 'way 1' | 'way 2'; fan?: ProcessHandle }
  const sides: Way[] = [];
  beforeAll(async () => {
    const missing = dockerMissing();
    if (missing) throw new Error(`cannot run Docker here: ${missing}`);
    topo = await createFanTopology();
    top = mkdtempSync(join(tmpdir(), `${topo.prefix}-ways-`));
    tar = await busyboxRootfsTar(top);
    for (const host of topo.hosts) {
      const dir = join(top, host.name);
      mkdirSync(dir);
      const key = join(dir, 'key.json');
      // Way 1 gives --bridge as a flag (daemon.json may not repeat it); way 2 wants no docker0: "bridge": "none".
      writeFileSync(join(dir, 'plain.json'), JSON.stringify({ 'deprecated-key-path': key, 'log-level': 'warn' }));
      writeFileSync(join(dir, 'nobridge.json'), JSON.stringify({ 'deprecated-key-path': key, 'log-level': 'warn', bridge: 'none' }));
      sides.push({ host, dir, plainJson: join(dir, 'plain.json'), noBridgeJson: join(dir, 'nobridge.json') });
    }
  }, 120_000);
  afterAll(async () => {
    for (const s of sides) await s.dockerd?.stop().catch(() => undefined);
    for (const s of sides) await s.fan?.stop(10_000);
    await topo?.destroy();
    if (top) rmSync(top, { recursive: true, force: true });
  }, 180_000);

  type Type = 'ipip' | 'vxlan';
  const MTU: Record<Type, number> = { ipip: 1480, vxlan: 1450 };
  const userfan = (s: Way, args: string[]) => topo.exec(s.host, [process.execPath, CLI, ...args], { allowFail: true, timeoutMs: 30_000 });
  const fanArgs = (s: Way) => ['-o', '250.0.0.0/8', '-u', s.host.underlayCidr];
  const typeArgs = (t: Type) => (t === 'vxlan' ? ['--type', 'vxlan'] : []);
  const slice24 = (s: Way) => s.host.slice.cidr; // 250.0.28.0/24 on A

  async function fanUp(s: Way, t: Type, extra: string[] = []): Promise<void> {
    const d = await startDaemon(topo, s.host, [...fanArgs(s), '--workers', '1', ...typeArgs(t), ...extra]);
    s.fan = d.process;
  }
  /**
   * Each case starts from what the one before it should have left (a failed one leaves more): no fan up, and
   * a dockerd only when it was started as this case wants it, without containers or networks.
   */
  async function ready(want: 'way 1' | 'way 2'): Promise<void> {
    for (const s of sides) {
      await s.fan?.stop(10_000);
      if (s.dockerd && (want === 'way 1' || s.dockerKind !== want)) await dockerDown(s);
      if (s.dockerd) {
        await s.dockerd.docker(['rm', '-f', 'c1']);
        await s.dockerd.docker(['network', 'rm', 'fan']);
      }
    }
  }
  async function dockerUp(s: Way, json: string, args: string[] = []): Promise<Dockerd> {
    s.dockerKind = args.length ? 'way 1' : 'way 2';
    s.dockerd = await startDockerd(topo.lab, s.host.ns, join(s.dir, 'docker'), json, `${topo.prefix}-ways-${s.host.name}`, args);
    const imp = await s.dockerd.docker(['import', tar, IMAGE]);
    expect(imp.code, imp.stderr).toBe(0);
    return s.dockerd;
  }
  async function dockerDown(s: Way): Promise<void> {
    await s.dockerd?.stop();
    s.dockerd = undefined;
  }
  /** A container `c1` on `network` (Docker's default when undefined), checked: address in the host's slice, the fan's MTU. */
  async function container(s: Way, t: Type, network?: string): Promise<Box> {
    const d = s.dockerd!;
    const r = await d.docker(['run', '-d', '--rm', ...(network ? ['--network', network] : []), '--name', 'c1', IMAGE, 'sleep', '300']);
    expect(r.code, r.stderr).toBe(0);
    const [address] = (await d.docker(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}', 'c1'])).stdout.trim().split(/\s+/);
    expect(address.startsWith(s.host.slice.network.replace(/0$/, '')), `${address} in ${slice24(s)}`).toBe(true);
    expect((await d.docker(['exec', 'c1', 'cat', '/sys/class/net/eth0/mtu'])).stdout.trim()).toBe(String(MTU[t]));
    return d.box('c1', address, `docker c1 on ${s.host.name}`);
  }
  /** ICMP both ways, then 64 MiB byte-exact both ways, between the two hosts' containers. */
  async function crossTraffic(boxes: Box[]): Promise<void> {
    for (const [from, to] of [[boxes[0], boxes[1]], [boxes[1], boxes[0]]]) {
      // At least one answer: the kernel's neighbour table is shared by every namespace on the machine, and a
      // big lab running beside this one can fill it and drop an echo.
      const p = await boxPing(from, to.address);
      expect(p.received, `${from.name} -> ${to.address}: ${p.output}`).toBeGreaterThan(0);
    }
    for (const [from, to] of [[boxes[0], boxes[1]], [boxes[1], boxes[0]]]) {
      const t = await boxTransfer(topo.lab, from, to, MiB64, { deadlineMs: 120_000 });
      expect(t.match, `${from.name} -> ${to.name}: ${JSON.stringify(t)}`).toBe(true);
    }
  }
  /** What userfan leaves on a host after down: no TUN/TAP, no overlay route, no nft table, no state, no fan. */
  async function nothingOfUserfan(s: Way): Promise<void> {
    const links = (await topo.exec(s.host, ['ip', '-o', 'link', 'show'])).stdout;
    expect(links).not.toMatch(/: uf-250/);
    expect((await topo.exec(s.host, ['ip', 'route', 'show', '250.0.0.0/8'])).stdout.trim()).toBe('');
    expect((await topo.exec(s.host, ['nft', 'list', 'tables'])).stdout).not.toMatch(/userfan_/);
    expect((await userfan(s, ['show'])).stdout.trim()).toBe('no fans are up');
  }
  const bridgeAddr = async (s: Way, br: string) => {
    const r = await topo.exec(s.host, ['ip', '-j', 'addr', 'show', 'dev', br], { allowFail: true });
    if (r.code !== 0) return undefined;
    const [l] = JSON.parse(r.stdout);
    const a = l.addr_info.find((x: { family: string }) => x.family === 'inet');
    return { cidr: a ? `${a.local}/${a.prefixlen}` : '', mtu: l.mtu as number };
  };

  for (const t of ['ipip', 'vxlan'] as const) {
    it(`way 1, ${t}: userfan up, then dockerd --bridge on the fan's bridge; ICMP and 64 MiB both ways; down removes its bridge`, async () => {
      const boxes: Box[] = [];
      await ready('way 1');
      for (const s of sides) {
        await fanUp(s, t);
        const br = t === 'vxlan' ? 'fan-250' : s.host.slice.bridge;
        await dockerUp(s, s.plainJson, ['--bridge', br, '--mtu', String(MTU[t]), ...(t === 'vxlan' ? ['--fixed-cidr', slice24(s)] : [])]);
        boxes.push(await container(s, t));
      }
      await crossTraffic(boxes);
      for (const s of sides) {
        await dockerDown(s); // Docker first: the bridge is userfan's
        const r = await userfan(s, ['down', ...fanArgs(s)]);
        expect(r.code, r.stderr).toBe(0);
        await s.fan!.wait(10_000);
        expect(await bridgeAddr(s, t === 'vxlan' ? 'fan-250' : s.host.slice.bridge)).toBeUndefined();
        await nothingOfUserfan(s);
      }
    }, 240_000);
  }

  for (const t of ['ipip', 'vxlan'] as const) {
    it(`way 2, ${t}: docker network create, then userfan up --bridge adopts it; ICMP and 64 MiB both ways; down${t === 'vxlan' ? ' after kill -9' : ''} leaves it`, async () => {
      const boxes: Box[] = [];
      await ready('way 2');
      for (const s of sides) {
        const br = s.host.slice.bridge; // fan-250-0-28 on A
        if (!s.dockerd) await dockerUp(s, s.noBridgeJson);
        const net = await s.dockerd!.docker(['network', 'create', '-d', 'bridge', '--subnet', slice24(s), '--gateway', s.host.slice.gateway,
          '-o', `com.docker.network.bridge.name=${br}`, '-o', `com.docker.network.driver.mtu=${MTU[t]}`, 'fan']);
        expect(net.code, net.stderr).toBe(0);
        expect(await bridgeAddr(s, br)).toEqual({ cidr: `${s.host.slice.gateway}/24`, mtu: 1500 }); // Docker leaves its bridge at 1500
        await fanUp(s, t, ['--bridge', br]);
        expect(await bridgeAddr(s, br)).toEqual({ cidr: `${s.host.slice.gateway}/24`, mtu: MTU[t] }); // lowered to the fan's
        const [row] = JSON.parse((await userfan(s, ['show', '--json'])).stdout);
        expect(row).toMatchObject({ bridge: br, adopted: true, slice: slice24(s) });
        expect((await userfan(s, ['show'])).stdout).toContain(`bridge ${br} (adopted): it was there before userfan up, and stays at down`);
        boxes.push(await container(s, t, 'fan'));
      }
      await crossTraffic(boxes);
      for (const [i, s] of sides.entries()) {
        const br = s.host.slice.bridge;
        if (t === 'vxlan' && i === 0) {
          s.fan!.kill('SIGKILL');
          await s.fan!.wait(5000);
        }
        const r = await userfan(s, ['down', ...fanArgs(s)]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(t === 'vxlan' && i === 0 ? /down \(cleaned-after-crash/ : /down \(stopped/);
        await s.fan!.wait(10_000);
        // Docker's bridge stays, with its address and its container's port; nothing of userfan's is left on it.
        expect(await bridgeAddr(s, br)).toEqual({ cidr: `${s.host.slice.gateway}/24`, mtu: MTU[t] });
        expect((await topo.exec(s.host, ['ip', '-o', 'link', 'show', 'master', br])).stdout).toMatch(/veth/);
        await nothingOfUserfan(s);
        expect((await s.dockerd!.docker(['rm', '-f', 'c1'])).code).toBe(0);
        expect((await s.dockerd!.docker(['network', 'rm', 'fan'])).code).toBe(0);
        expect(await bridgeAddr(s, br)).toBeUndefined(); // Docker took its bridge away
      }
    }, 240_000);
  }

  it('refuses, exit 2 and one line, before making anything: a Docker bridge with another prefix, one whose container has MTU 1500, a veth of the name', async () => {
    const [A] = sides;
    const br = A.host.slice.bridge;
    await ready('way 2');
    if (!A.dockerd) await dockerUp(A, A.noBridgeJson);
    const d = A.dockerd!;
    const before = async () => ({ links: (await topo.exec(A.host, ['ip', '-o', 'link', 'show'])).stdout, routes: (await topo.exec(A.host, ['ip', 'route', 'show', 'table', 'all'])).stdout });
    const refused = async (rule: RegExp) => {
      const was = await before();
      const r = await userfan(A, ['up', ...fanArgs(A), '--bridge', br]);
      expect(r.code, r.stdout + r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(new RegExp(`^userfan up: bridge "${br}": ${rule.source}`));
      expect(await before()).toEqual(was);
      expect((await userfan(A, ['show'])).stdout.trim()).toBe('no fans are up');
    };
    const netCreate = (subnet: string, opts: string[]) => d.docker(['network', 'create', '-d', 'bridge', '--subnet', subnet, '--gateway', A.host.slice.gateway, '-o', `com.docker.network.bridge.name=${br}`, ...opts, 'fan']);
    expect((await netCreate('250.0.0.0/16', ['-o', 'com.docker.network.driver.mtu=1480'])).code).toBe(0);
    await refused(/holds 250\.0\.28\.1\/16, where an IP-in-IP fan needs 250\.0\.28\.1\/24 \(another prefix takes routes the fan needs\): change its address, or name another bridge with --bridge$/);
    expect((await d.docker(['network', 'rm', 'fan'])).code).toBe(0);
    // Without com.docker.network.driver.mtu Docker gives its containers 1500, more than the fan carries.
    expect((await netCreate(slice24(A), [])).code).toBe(0);
    expect((await d.docker(['run', '-d', '--rm', '--network', 'fan', '--name', 'c1', IMAGE, 'sleep', '300'])).code).toBe(0);
    await refused(/has a port veth\w+ with MTU 1500, above the fan's 1480: .* \(for Docker: -o com\.docker\.network\.driver\.mtu=1480 on the network\)$/);
    expect((await d.docker(['rm', '-f', 'c1'])).code).toBe(0);
    expect((await d.docker(['network', 'rm', 'fan'])).code).toBe(0);
    await topo.exec(A.host, ['ip', 'link', 'add', br, 'type', 'veth', 'peer', 'name', `${topo.prefix}vp`]);
    await refused(/exists on this host as a veth device, not a bridge .*: remove it or name another with --bridge$/);
    await topo.exec(A.host, ['ip', 'link', 'del', br]);
  }, 120_000);

  it('leaves nothing: no dockerd, no files, no cgroup, no namespace of the lab', async () => {
    const procs = sides.map((s) => s.dockerd?.process).filter((p): p is ProcessHandle => p !== undefined);
    for (const s of sides) await dockerDown(s);
    for (const p of procs) expect(p.running).toBe(false);
    for (const s of sides) expect(existsSync(join(s.dir, 'docker'))).toBe(false);
    expect(cgroupsStartingWith(`${topo.prefix}-`)).toEqual([]);
    await topo.destroy();
    const names = (await run(['ip', 'netns', 'list'])).stdout;
    expect(names).not.toContain(`${topo.prefix}-`);
  }, 120_000);
});
