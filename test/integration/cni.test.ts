/**
 * The userfan CNI plugin run by the CNI protocol itself (CNI_* variables, the configuration on stdin,
 * through the launcher `userfan cni install` writes) on two lab hosts: A with an IP-in-IP fan
 * (250.0.28.0/24 on bridge fan-250-0-28 at MTU 1480), B with a VXLAN fan and host-reserve 250 (its
 * containers get 250.0.27.251-.254 with the overlay's /8, MTU 1450). Containers are namespaces made here.
 * - ADD attaches with an address from the slice, the fan's MTU and the default route via .1; CHECK passes;
 *   DEL removes the link and releases the address; CHECK after DEL fails;
 * - 20 ADDs at once get 20 distinct addresses (host-local's flock), and 20 DELs release them all;
 * - on B: the VXLAN addressing, then the slice exhausted (code 100, nothing left behind), then room again;
 * - errors: bad configurations (each names its field), no fan up here (11; STATUS 50), a missing variable;
 * - GC releases what the runtime no longer lists; STATUS says ready;
 * - with A's daemon stopped, DEL still releases; restarted, the addresses held stay held, CHECK finds the
 *   old link off the new bridge (101) until the next ADD (or `userfan cni reattach`) puts it back.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFanTopology, type FanTopology, type Host } from '../../src/lab/topology.js';
import { CLI, startDaemon, type Daemon } from '../../src/lab/userfan-lab.js';

interface Reply {
  code: number | null;
  out: any;
  stderr: string;
}

describe('the userfan CNI plugin by the CNI protocol', () => {
  let topo: FanTopology;
  let top: string;
  let launcher: string;
  const daemons = new Map<string, Daemon>();
  let A: Host;
  let B: Host;
  const NET = 'hnfan';
  const dataDir = (h: Host) => join(top, `${h.name}-data`);
  const conf = (h: Host, extra: Record<string, unknown> = {}) => ({ cniVersion: '1.0.0', name: NET, type: 'userfan', dataDir: dataDir(h), ...extra });
  const upArgs = (h: Host) => (h.name === 'A' ? ['-o', '250.0.0.0/8', '-u', h.underlayCidr, '--workers', '1'] : ['-o', '250.0.0.0/8', '-u', h.underlayCidr, '--workers', '1', '--type', 'vxlan', '--host-reserve', '250']);
  let seq = 0;
  const container = async (h: Host) => {
    const n = ++seq;
    const ns = await topo.lab.addNamespace(`${h.name}-k${n}`);
    return { ns, id: `hn${n}x${topo.prefix}`, path: `/run/netns/${ns}` };
  };
  type Ctr = Awaited<ReturnType<typeof container>>;

  /** The plugin, through the launcher, in host h's namespace (ns: another namespace to run it in). */
  const plugin = async (h: Host | string, command: string, stdin: unknown, c?: Ctr, env: Record<string, string> = {}): Promise<Reply> => {
    const vars: Record<string, string> = { CNI_COMMAND: command, CNI_PATH: '/usr/lib/cni', ...(c ? { CNI_CONTAINERID: c.id, CNI_NETNS: c.path, CNI_IFNAME: 'eth0' } : {}), ...env };
    const r = await topo.exec(h, [launcher], { input: typeof stdin === 'string' ? stdin : JSON.stringify(stdin), env: vars, allowFail: true, timeoutMs: 60_000 });
    return { code: r.code, out: r.stdout.trim() ? JSON.parse(r.stdout) : undefined, stderr: r.stderr };
  };
  const add = async (h: Host, c: Ctr) => {
    const r = await plugin(h, 'ADD', conf(h), c);
    expect(r.code, JSON.stringify(r.out)).toBe(0);
    return r.out as { cniVersion: string; interfaces: { name: string; sandbox?: string }[]; ips: { address: string; gateway: string }[]; routes: { dst: string; gw: string }[] };
  };
  const del = async (h: Host, c: Ctr) => {
    const r = await plugin(h, 'DEL', conf(h), c);
    expect(r.code, JSON.stringify(r.out)).toBe(0);
    expect(r.out).toBeUndefined();
  };
  const held = (h: Host) => {
    const d = join(dataDir(h), 'ipam', NET);
    return existsSync(d) ? readdirSync(d).filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n)).sort() : [];
  };

  beforeAll(async () => {
    topo = await createFanTopology();
    [A, B] = topo.hosts;
    top = mkdtempSync(join(tmpdir(), `${topo.prefix}-cni-`));
    for (const h of topo.hosts) daemons.set(h.name, await startDaemon(topo, h, upArgs(h)));
  }, 90_000);
  afterAll(async () => {
    for (const d of daemons.values()) await d.process.stop(10_000);
    await topo?.destroy();
    if (top) rmSync(top, { recursive: true, force: true });
  }, 60_000);

  it('userfan cni install writes the launcher and prints (and writes) the network configuration', async () => {
    const r = await topo.exec(undefined, [process.execPath, CLI, 'cni', 'install', '--dir', join(top, 'bin'), '--conf-dir', join(top, 'net'), '--name', NET, '-o', '250.0.0.0/8'], { allowFail: true });
    expect(r.code, r.stderr).toBe(0);
    launcher = join(top, 'bin', 'userfan');
    expect(statSync(launcher).mode & 0o111).toBe(0o111);
    expect(readFileSync(launcher, 'utf8')).toMatch(/^#!\/bin\/sh\n[\s\S]*exec '.*node[^']*' '.*\/dist\/src\/cni\/main\.js' "\$@"\n$/);
    const printed = JSON.parse(r.stdout);
    expect(printed).toEqual({ cniVersion: '1.0.0', name: NET, plugins: [{ type: 'userfan', overlay: '250.0.0.0/8' }] });
    expect(JSON.parse(readFileSync(join(top, 'net', `10-${NET}.conflist`), 'utf8'))).toEqual(printed);
    const v = await plugin(A, 'VERSION', { cniVersion: '1.0.0' });
    expect(v).toMatchObject({ code: 0, out: { cniVersion: '1.0.0', supportedVersions: expect.arrayContaining(['0.4.0', '1.0.0', '1.1.0']) } });
    const bad = await topo.exec(undefined, [process.execPath, CLI, 'cni', 'install', '--name', 'no/slash'], { allowFail: true });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toMatch(/^userfan cni: --name "no\/slash": must start with a letter or digit/);
  });

  it('ADD attaches to the fan bridge (slice address, MTU, default route via .1); CHECK passes; DEL releases', async () => {
    const c = await container(A);
    const res = await add(A, c);
    const [ip] = res.ips;
    expect(ip.address).toMatch(/^250\.0\.28\.(\d+)\/24$/);
    expect(ip.address).not.toBe('250.0.28.1/24');
    expect(ip.gateway).toBe('250.0.28.1');
    expect(res.routes).toEqual([{ dst: '0.0.0.0/0', gw: '250.0.28.1' }]);
    expect(res.interfaces[0].name).toBe('fan-250-0-28');
    expect(res.interfaces.find((i) => i.sandbox)).toMatchObject({ name: 'eth0', sandbox: c.path });
    const link = JSON.parse((await topo.exec(c.ns, ['ip', '-j', 'addr', 'show', 'dev', 'eth0'])).stdout)[0];
    expect(link.mtu).toBe(1480);
    expect(link.addr_info.find((a: any) => a.family === 'inet')).toMatchObject({ local: ip.address.split('/')[0], prefixlen: 24 });
    expect((await topo.exec(c.ns, ['ip', 'route', 'show', 'default'])).stdout).toMatch(/^default via 250\.0\.28\.1 dev eth0/);
    expect((await topo.ping(c.ns, '250.0.28.1')).ok).toBe(true);
    expect(held(A)).toEqual([ip.address.split('/')[0]]);

    const ok = await plugin(A, 'CHECK', conf(A, { prevResult: res }), c);
    expect(ok.code, JSON.stringify(ok.out)).toBe(0);
    expect(ok.out).toBeUndefined();

    await del(A, c);
    expect(held(A)).toEqual([]);
    expect((await topo.exec(c.ns, ['ip', 'link', 'show', 'dev', 'eth0'], { allowFail: true })).code).not.toBe(0);
    const gone = await plugin(A, 'CHECK', conf(A, { prevResult: res }), c);
    expect(gone.code).toBe(1);
    expect(gone.out).toMatchObject({ cniVersion: '1.0.0', code: 3, msg: expect.stringMatching(/is not attached to network hnfan/) });
    await del(A, c); // a second DEL of the same container succeeds (spec: DEL is idempotent)
  });

  it('20 ADDs at once get 20 distinct addresses of the slice; 20 DELs at once release them all', async () => {
    const cs = await Promise.all(Array.from({ length: 20 }, () => container(A)));
    const results = await Promise.all(cs.map((c) => add(A, c)));
    const addrs = results.map((r) => r.ips[0].address.split('/')[0]);
    expect(new Set(addrs).size).toBe(20);
    for (const a of addrs) expect(a).toMatch(/^250\.0\.28\.(?!1$|0$|255$)\d+$/);
    expect(held(A)).toEqual([...addrs].sort());
    await Promise.all(cs.map((c) => del(A, c)));
    expect(held(A)).toEqual([]);
  }, 120_000);

  it('on a VXLAN fan with host-reserve 250: the overlay\'s prefix, MTU 1450; the fifth ADD finds the slice exhausted', async () => {
    const cs = await Promise.all(Array.from({ length: 5 }, () => container(B)));
    const got: string[] = [];
    for (const c of cs.slice(0, 4)) {
      const r = await add(B, c);
      expect(r.ips[0]).toMatchObject({ address: expect.stringMatching(/^250\.0\.27\.25[1-4]\/8$/), gateway: '250.0.27.1' });
      expect(r.interfaces[0].name).toBe('fan-250');
      got.push(r.ips[0].address);
    }
    expect(new Set(got).size).toBe(4);
    expect(JSON.parse((await topo.exec(cs[0].ns, ['ip', '-j', 'link', 'show', 'dev', 'eth0'])).stdout)[0].mtu).toBe(1450);
    expect((await topo.ping(cs[0].ns, '250.0.27.1')).ok).toBe(true);

    const full = await plugin(B, 'ADD', conf(B), cs[4]);
    expect(full.code).toBe(1);
    expect(full.out).toMatchObject({ cniVersion: '1.0.0', code: 100 });
    expect(full.out.msg).toBe('slice 250.0.27.0/24 of fan 250.0.0.0/8 is exhausted: all 4 container addresses (250.0.27.251-250.0.27.254, after host-reserve 250) are in use on this host');
    expect((await topo.exec(cs[4].ns, ['ip', 'link', 'show', 'dev', 'eth0'], { allowFail: true })).code).not.toBe(0);
    expect(existsSync(join(dataDir(B), 'attachments', NET, `${cs[4].id}.eth0.json`))).toBe(false);

    await del(B, cs[1]);
    expect((await add(B, cs[4])).ips[0].address).toBe(got[1]);
    await Promise.all([cs[0], cs[2], cs[3], cs[4]].map((c) => del(B, c)));
    expect(held(B)).toEqual([]);
  }, 60_000);

  it('refuses bad configurations, naming the field and the rule (code 7, 6, 1), and a missing variable (4)', async () => {
    const c = await container(A);
    const cases: [unknown, number, RegExp][] = [
      ['{"cniVersion": "1.0.0",', 6, /^network configuration on stdin is not JSON/],
      [conf(A, { cniVersion: '0.2.0' }), 1, /^network configuration: cniVersion "0\.2\.0": userfan speaks 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0$/],
      [conf(A, { name: '../x' }), 7, /^network configuration: name "\.\.\/x": must start with a letter or digit/],
      [conf(A, { overlay: '250.0.0.1/8' }), 7, /^network configuration: overlay "250\.0\.0\.1\/8": host bits are set; an overlay must be a network address, e.g. 250\.0\.0\.0\/8$/],
      [conf(A, { ipam: { type: 'host-local' } }), 7, /^network configuration: ipam .*: userfan hands out addresses from this host's slice itself/],
      [conf(A, { dataDir: 'relative' }), 7, /^network configuration: dataDir "relative": must be an absolute path/],
      [conf(A, { overlay: '250.0.0.0/8', underlay: '198.18.0.27/16' }), 7, /^network configuration: underlay "198\.18\.0\.27\/16": the fan up here is 250\.0\.0\.0\/8 over 198\.18\.0\.0\/16 with this host 198\.18\.0\.28/],
    ];
    for (const [stdin, code, msg] of cases) {
      const r = await plugin(A, 'ADD', stdin, c);
      expect(r.code, JSON.stringify(stdin)).toBe(1);
      expect(r.out.code, JSON.stringify(r.out)).toBe(code);
      expect(r.out.msg).toMatch(msg);
    }
    const noNetns = await plugin(A, 'ADD', conf(A), c, { CNI_NETNS: '' });
    expect(noNetns.out).toMatchObject({ code: 4, msg: expect.stringMatching(/^CNI_NETNS is not set: ADD needs the container's network namespace/) });
    expect(held(A)).toEqual([]);
  });

  it('says when no fan is up here: ADD 11 (no userfan; no such overlay), STATUS 50; STATUS with the fan up: ready', async () => {
    const c = await container(A);
    const empty = c.ns; // a namespace where no userfan runs
    const none = await plugin(empty, 'ADD', conf(A), c);
    expect(none.out).toMatchObject({ code: 11, msg: 'fan not up here: no userfan is running in this network namespace; start it with userfan up -o OVERLAY -u UNDERLAY (see docs/cni.md)' });
    const other = await plugin(A, 'ADD', conf(A, { overlay: '250.1.0.0/16' }), c);
    expect(other.out).toMatchObject({ code: 11, msg: expect.stringMatching(/^fan not up here: no fan with overlay 250\.1\.0\.0\/16; up here: 250\.0\.0\.0\/8 over 198\.18\.0\.0\/16 \(bridge fan-250-0-28\)/) });
    const st = await plugin(empty, 'STATUS', conf(A));
    expect(st.out).toMatchObject({ code: 50, msg: expect.stringMatching(/^fan not up here/) });
    const ready = await plugin(A, 'STATUS', conf(A, { cniVersion: '1.1.0' }));
    expect(ready).toMatchObject({ code: 0, out: undefined });
    expect(held(A)).toEqual([]);
  });

  it('GC releases the attachments the runtime no longer lists and keeps the rest', async () => {
    const [k1, k2] = [await container(A), await container(A)];
    const [r1, r2] = [await add(A, k1), await add(A, k2)];
    const gc = await plugin(A, 'GC', conf(A, { cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: k1.id, ifname: 'eth0' }] }));
    expect(gc.code, JSON.stringify(gc.out)).toBe(0);
    expect(held(A)).toEqual([r1.ips[0].address.split('/')[0]]);
    expect(r2.ips[0].address).not.toBe(r1.ips[0].address);
    await del(A, k1);
    expect(held(A)).toEqual([]);
  });

  it('DEL releases with the daemon down; after a restart the addresses held stay held and the next ADD re-attaches', async () => {
    const [k1, k2] = [await container(A), await container(A)];
    const r1 = await add(A, k1);
    await add(A, k2);
    const x1 = r1.ips[0].address.split('/')[0];
    await daemons.get('A')!.process.stop(10_000);

    expect((await plugin(A, 'CHECK', conf(A, { prevResult: r1 }), k1)).out).toMatchObject({ code: 11 });
    await del(A, k2);
    expect(held(A)).toEqual([x1]);
    expect((await topo.exec(k2.ns, ['ip', 'link', 'show', 'dev', 'eth0'], { allowFail: true })).code).not.toBe(0);

    daemons.set('A', await startDaemon(topo, A, upArgs(A)));
    const off = await plugin(A, 'CHECK', conf(A, { prevResult: r1 }), k1);
    expect(off.out).toMatchObject({ code: 101, msg: expect.stringMatching(/^container \S+'s link veth\w+ is on no bridge, not of fan bridge fan-250-0-28/) });
    const k3 = await container(A);
    const r3 = await add(A, k3);
    expect(r3.ips[0].address.split('/')[0]).not.toBe(x1);
    expect(held(A)).toEqual([x1, r3.ips[0].address.split('/')[0]].sort());
    const back = await plugin(A, 'CHECK', conf(A, { prevResult: r1 }), k1);
    expect(back.code, JSON.stringify(back.out)).toBe(0);
    expect((await topo.ping(k1.ns, '250.0.28.1')).ok).toBe(true);

    // userfan cni reattach does the same without an ADD.
    const veth = r1.interfaces[1].name;
    await topo.exec(A, ['ip', 'link', 'set', 'dev', veth, 'nomaster']);
    expect((await plugin(A, 'CHECK', conf(A, { prevResult: r1 }), k1)).out).toMatchObject({ code: 101 });
    const re = await topo.exec(A, [process.execPath, CLI, 'cni', 'reattach', '--name', NET, '--data-dir', dataDir(A)], { allowFail: true });
    expect(re.code, re.stderr).toBe(0);
    expect(re.stdout.trim()).toBe(`1 link(s) put back on fan-250-0-28: ${veth}`);
    expect((await plugin(A, 'CHECK', conf(A, { prevResult: r1 }), k1)).code).toBe(0);
    await del(A, k1);
    await del(A, k3);
    expect(held(A)).toEqual([]);
  }, 90_000);
});
