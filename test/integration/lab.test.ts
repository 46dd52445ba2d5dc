// The namespace lab itself: topology, plain overlay routing, and teardown (also after a failure).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Lab, cleanupStale, listNamespaces, randomPrefix, run, spawnProcess } from '../../src/lab/netns.js';
import { createFanTopology, fanBridgeName, fanSlice, type FanTopology } from '../../src/lab/topology.js';
import { waitFor } from '../helpers/wait.js';

// the SIGINT test runs a child node process on the compiled lab (npm test builds first)
const distTopology = fileURLToPath(new URL('../../dist/src/lab/topology.js', import.meta.url));

async function nsWithPrefix(prefix: string): Promise<string[]> {
  return (await listNamespaces()).filter((n) => n.startsWith(prefix + '-'));
}

describe('lab helpers', () => {
  it('computes fan slices and bridge names', () => {
    expect(fanSlice('250.0.0.0', 8, '198.18.0.28', 16)).toEqual({ network: '250.0.28.0', prefixLen: 24 });
    expect(fanSlice('250.1.0.0', 16, '198.18.7.27', 24)).toEqual({ network: '250.1.27.0', prefixLen: 24 });
    expect(fanSlice('100.64.0.0', 10, '10.224.220.11', 24)).toEqual({ network: '100.66.192.0', prefixLen: 18 });
    expect(fanBridgeName('250.0.28.0', 24)).toBe('fan-250-0-28');
  });

  it('run() throws with the command and stderr, and enforces timeouts', async () => {
    await expect(run(['ip', 'link', 'show', 'dev', 'no-such-dev0'])).rejects.toThrow(/ip link show dev no-such-dev0[\s\S]*(not exist|Cannot find)/);
    // A command that never ends on its own: only the timeout can end it (without one this test hangs
    // until vitest's deadline and fails).
    await expect(run(['sleep', 'infinity'], { timeoutMs: 200 })).rejects.toThrow(/timed out/);
    expect(await run(['sleep', 'infinity'], { timeoutMs: 200, allowFail: true })).toMatchObject({ timedOut: true, signal: 'SIGKILL' });
    expect((await run(['echo', 'hi'])).stdout).toBe('hi\n');
  }, 20_000);

  it('spawnProcess stop() escalates to SIGKILL', async () => {
    // a process that ignores SIGTERM and never ends on its own
    const h = spawnProcess(['bash', '-c', 'trap "" TERM; echo up; while :; do sleep 1; done']);
    await h.waitForLine(/^up$/, 5000);
    await h.stop(300);
    expect(h.running).toBe(false);
    expect(h.exitSignal).toBe('SIGKILL');
  }, 20_000);
});

describe('two-host fan topology', () => {
  beforeAll(() => {
    // Root only, like every namespace test: not root is a failure with its reason, never a skip.
    if (process.getuid?.() !== 0) throw new Error('the lab builds network namespaces: run these tests as root');
  });
  let topo: FanTopology | undefined;
  afterAll(async () => {
    const prefix = topo?.prefix;
    await topo?.destroy();
    if (prefix) expect(await nsWithPrefix(prefix)).toEqual([]);
  });

  it('routes container to container over the underlay (plain routes, no encapsulation)', async () => {
    topo = await createFanTopology();
    const [a, b] = topo.hosts;
    expect(a.underlay).toBe('198.18.0.28');
    expect(b.underlay).toBe('198.18.0.27');
    expect(a.slice.cidr).toBe('250.0.28.0/24');
    expect(a.slice.bridge).toBe('fan-250-0-28');
    expect(a.underlayIf.length).toBeLessThanOrEqual(15);
    expect((await topo.exec(a, ['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim()).toBe('1');
    expect((await topo.ping(a, b.underlay)).ok).toBe(true);

    for (const h of [a, b]) await topo.addBridge(h, h.slice.bridge, `${h.slice.gateway}/24`, 1480);
    const ca = await topo.addContainer(a);
    const cb = await topo.addContainer(b);
    expect(ca.address).toBe('250.0.28.3');
    expect(cb.address).toBe('250.0.27.3');
    expect(ca.gateway).toBe('250.0.28.1');
    expect(ca.mtu).toBe(1480);

    await topo.exec(a, ['ip', 'route', 'add', b.slice.cidr, 'via', b.underlay]);
    await topo.exec(b, ['ip', 'route', 'add', a.slice.cidr, 'via', a.underlay]);
    const p = await topo.ping(ca, cb.address, { count: 3 });
    expect(p.ok, p.output).toBe(true);
    expect(p.received).toBe(3);
    // 1480-byte packet with DF crosses (1452 + 28)
    expect((await topo.ping(ca, cb.address, { size: 1452, df: true })).ok).toBe(true);

    // a spawned server in a container is stopped by destroy()
    const srv = topo.spawn(cb, ['iperf3', '-s', '-1', '-B', cb.address]);
    await waitFor('iperf3 listening in the container', async () => (await topo!.exec(cb, ['ss', '-Hltn', 'sport', '=', ':5201'])).stdout.includes(cb.address));
    expect(srv.running).toBe(true);
    const prefix = topo.prefix;
    await topo.destroy();
    expect(srv.running).toBe(false);
    expect(await nsWithPrefix(prefix)).toEqual([]);
    await topo.destroy(); // idempotent
  });

  it('three hosts share a bridge namespace; second width addresses', async () => {
    const t = await createFanTopology({ hosts: 3, secondWidth: true });
    try {
      const [a, , c] = t.hosts;
      expect(c.underlay).toBe('198.18.0.26');
      expect(t.underlayNs).toBeDefined();
      expect(a.slice2?.cidr).toBe('250.1.28.0/24');
      expect(a.slice2?.bridge).toBe('fan-250-1-28');
      expect((await t.ping(a, c.underlay)).ok).toBe(true);
      expect((await t.ping(a, c.underlay2!)).ok).toBe(true);
    } finally {
      await t.destroy();
    }
    expect(await nsWithPrefix(t.prefix)).toEqual([]);
  });

  it('destroy() removes everything when a step fails midway', async () => {
    const lab = await Lab.create();
    const prefix = lab.prefix;
    try {
      await expect(
        (async () => {
          const t = await createFanTopology({ lab });
          const proc = t.spawn(t.hosts[0], ['sleep', '60']);
          expect(proc.running).toBe(true);
          // the bridge does not exist: addContainer fails after waiting
          await t.addContainer(t.hosts[0], { bridge: 'nobridge0', waitForBridgeMs: 200 });
        })(),
      ).rejects.toThrow(/bridge nobridge0 does not exist/);
      expect((await nsWithPrefix(prefix)).length).toBe(2);
    } finally {
      await lab.destroy();
    }
    expect(await nsWithPrefix(prefix)).toEqual([]);
    expect(lab.processes).toEqual([]);
  });

  it('a failing topology build cleans up after itself', async () => {
    const prefix = randomPrefix();
    await expect(
      createFanTopology({ prefix, specs: [{ name: 'A', underlay: '198.18.0.28' }, { name: 'A', underlay: '198.18.0.27' }] }),
    ).rejects.toThrow(/already exists/);
    expect(await nsWithPrefix(prefix)).toEqual([]);
  });

  it('SIGINT to a process holding a lab removes the lab', async () => {
    // CI builds dist/ before the tests (npm test): a missing build is a failure, not a skip.
    expect(existsSync(distTopology), `${distTopology} is missing: npm run build`).toBe(true);
    const prefix = randomPrefix();
    const script = `
      const { createFanTopology } = await import(${JSON.stringify(distTopology)});
      const t = await createFanTopology({ prefix: ${JSON.stringify(prefix)} });
      t.spawn(t.hosts[1], ['sleep', '60']);
      console.log('ready');
      setInterval(() => {}, 1000);`;
    const h = spawnProcess(['node', '--input-type=module', '-e', script]);
    try {
      await h.waitForLine(/^ready$/, 15_000);
      expect((await nsWithPrefix(prefix)).length).toBe(2);
      h.kill('SIGINT');
      expect(await h.wait(15_000)).toBe(130);
      expect(await nsWithPrefix(prefix)).toEqual([]);
    } finally {
      await h.stop(100);
      await cleanupStale(prefix);
    }
  });

  it('cleanupStale removes leftovers of a prefix', async () => {
    const lab = await Lab.create();
    await lab.addNamespace('x');
    await lab.addNamespace('y');
    // simulate a crashed run: the lab object is gone, its namespaces stay
    expect(await cleanupStale(lab.prefix)).toEqual(expect.arrayContaining([`${lab.prefix}-x`, `${lab.prefix}-y`]));
    expect(await nsWithPrefix(lab.prefix)).toEqual([]);
    await lab.destroy();
  });
});
