/**
 * The options that were removed because they measured no better than the defaults (`up --send packet`,
 * `--recv xdp`, `--tx-gso`): `up` with any of them exits 2 with one line on stderr that names the option and
 * says what to use instead, and makes nothing. Run in a namespace of the test's own (root) with an underlay
 * `up` could otherwise use, so that only the option can be what stops it; the namespace is removed in afterAll.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab } from '../../src/lab/netns.js';
import { CLI } from '../../src/lab/userfan-lab.js';

describe('up with a removed option', () => {
  let lab: Lab;
  let ns: string;
  beforeAll(async () => {
    lab = await Lab.create();
    ns = await lab.addNamespace('removed');
    // An underlay as the lab's hosts have one: a veth (both ends here; this kernel may lack dummy devices).
    const [ul, peer] = [lab.ifName('u'), lab.ifName('p')];
    await lab.exec(ns, ['ip', 'link', 'add', 'name', ul, 'type', 'veth', 'peer', 'name', peer]);
    await lab.exec(ns, ['ip', 'addr', 'add', '198.18.0.28/16', 'dev', ul]);
    for (const dev of [ul, peer]) await lab.exec(ns, ['ip', 'link', 'set', dev, 'up']);
  });
  afterAll(async () => lab?.destroy());

  /** What `up` could have made in the namespace: devices, addresses, routes, a daemon `show` knows of. */
  const made = async () => ({
    links: (await lab.exec(ns, ['ip', '-o', 'link', 'show'])).stdout,
    addresses: (await lab.exec(ns, ['ip', '-o', 'addr', 'show'])).stdout,
    routes: (await lab.exec(ns, ['ip', 'route', 'show', 'table', 'all'])).stdout,
    daemons: JSON.parse((await lab.exec(ns, [process.execPath, CLI, 'show', '--json'])).stdout),
  });

  const cases: [string, string[], RegExp][] = [
    ['--send packet', ['--send', 'packet'], /^userfan up: --send "packet": was removed: .*--send gso/],
    ['--recv xdp', ['--recv', 'xdp'], /^userfan up: --recv "xdp": was removed: .*leave --recv out/],
    ['--tx-gso off', ['--tx-gso', 'off'], /^userfan up: --tx-gso "off": was removed: .*--send raw/],
  ];
  for (const [what, args, message] of cases) {
    it(`${what}: exit 2, one line naming the option and what to use instead, nothing made`, async () => {
      const before = await made();
      expect(before.daemons).toEqual([]);
      const r = await lab.exec(ns, [process.execPath, CLI, 'up', '-o', '250.0.0.0/8', '-u', '198.18.0.28/16', ...args], { allowFail: true, timeoutMs: 20_000 });
      expect(r.code, r.stderr + r.stdout).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(message);
      expect(r.stdout).toBe('');
      expect(await made()).toEqual(before);
    });
  }
});
