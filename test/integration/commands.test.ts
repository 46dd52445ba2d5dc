/**
 * The userfan commands beyond `up`'s data path (root, in a lab of the test's own): --help, --version, an
 * unknown command; every refusal of a bad value, each checked to exit 2 with one line before anything is
 * made; `down` with nothing up, `up -a` and `down -a` with the default /etc/network/fan (in a private mount
 * namespace: the machine's own /etc is never written), `down` that cannot remove what a daemon made
 * (exit 1, the leftovers still listed, gone on the next try); `stats --watch`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFanTopology, type FanTopology, type Host } from '../../src/lab/topology.js';
import { CLI, startDaemon, type Daemon } from '../../src/lab/userfan-lab.js';
import { expectAllRefused, expectRefused, hostState } from '../helpers/host-state.js';
import { waitFor } from '../helpers/wait.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const VERSION = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version as string;

/**
 * argv that runs `rest` with /etc/network a fresh tmpfs of this process's own (a private mount namespace)
 * holding `fan` with `conf` when given: the machine's /etc/network is neither read nor written.
 */
const withEtcNetwork = (conf: string | undefined, rest: string[]) => [
  'unshare', '-m', '--propagation', 'private', 'sh', '-c',
  `mount -t tmpfs hb-etc-network /etc/network && ${conf === undefined ? '' : 'printf %s "$0" > /etc/network/fan && '}exec "$@"`,
  conf ?? 'sh', ...rest,
];

/** /etc/network as the machine has it: names, and the fan file's text if there is one. */
function etcNetwork(): { names: string[]; fan: string | null } {
  const names = readdirSync('/etc/network').sort();
  return { names, fan: names.includes('fan') ? readFileSync('/etc/network/fan', 'utf8') : null };
}

describe('userfan commands', () => {
  let topo: FanTopology;
  let A: Host;
  let B: Host;
  const daemons: Daemon[] = [];
  beforeAll(async () => {
    topo = await createFanTopology({ secondWidth: true });
    [A, B] = topo.hosts;
  });
  afterAll(async () => {
    await Promise.all(daemons.map((d) => d.process.stop(5000)));
    await topo?.destroy();
  });
  const cli = (args: string[], h: Host = A) => topo.exec(h, ['node', CLI, ...args], { allowFail: true, timeoutMs: 30_000 });

  it('--help and -h: every command and every option the README lists, exit 0; no command at all: the same, exit 2', async () => {
    const usage = README.slice(README.indexOf('## Use'), README.indexOf('The underlay can be written'));
    const table = README.slice(README.indexOf('The options of `up`'), README.indexOf('**How packets leave'));
    const commands = [...new Set([...usage.matchAll(/^userfan ([a-z-]+)/gm)].map((m) => m[1]))];
    const options = [...new Set([...(usage + table).matchAll(/(?<![\w-])(--[a-z][a-z-]*)/g)].map((m) => m[1]))];
    commands.push('disable-docker'); // written after enable-docker on its line
    expect(commands).toEqual(expect.arrayContaining(['up', 'down', 'show', 'stats', 'trace', 'explain', 'enable-docker', 'test', 'demo']));
    expect(options.length).toBeGreaterThan(25);
    for (const flag of ['--help', '-h']) {
      const r = await cli([flag]);
      expect(r.code, flag).toBe(0);
      expect(r.stderr).toBe('');
      for (const c of commands) expect(r.stdout, `${flag} names the command ${c}`).toMatch(new RegExp(`^  userfan ${c}\\b`, 'm'));
      for (const o of options) expect(r.stdout, `${flag} names the option ${o}`).toMatch(new RegExp(`${o}(?![\\w-])`));
    }
    const bare = await cli([]);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toBe((await cli(['--help'])).stdout);
  });

  it('--version and -V: userfan and the version of package.json, exit 0', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await cli([flag]);
      expect([r.code, r.stdout, r.stderr]).toEqual([0, `userfan ${VERSION}\n`, '']);
    }
  });

  it('an unknown command: exit 2, one line naming it, nothing made', async () => {
    await expectRefused(topo, A, ['frobnicate', '-o', '250.0.0.0/8'], 'userfan frobnicate: unknown command "frobnicate"; see userfan --help');
  });

  it('bad values of up, trace, explain, stats and down: exit 2, one line naming the field and the rule, nothing made', async () => {
    const up = ['up', '-o', '250.0.0.0/8', '-u', A.underlayCidr];
    const cases: [string[], string | RegExp][] = [
      [[...up, '--workers', '0'], 'userfan up: --workers "0": must be a whole number from 1 to 64'],
      [[...up, '--workers', '65'], 'userfan up: --workers "65": must be a whole number from 1 to 64'],
      [[...up, '--workers', 'all'], 'userfan up: --workers "all": must be a whole number from 1 to 64'],
      [[...up, '--metrics', 'x'], 'userfan up: --metrics "x": expected PORT or HOST:PORT, e.g. 127.0.0.1:9476 (loopback unless a host is given)'],
      [[...up, '--metrics', '70000'], /^userfan up: --metrics "70000": expected PORT or HOST:PORT/],
      [[...up, '--metrics', '127.0.0.1:'], /^userfan up: --metrics "127.0.0.1:": expected PORT or HOST:PORT/],
      [[...up, '--ttl', '256'], 'userfan up: --ttl "256": must be a whole number from 0 to 255'],
      [[...up, '--host-reserve', '254'], /^userfan up: host-reserve "254": must be between 1 and 253 for a \/24 slice/],
      [[...up, '--bridge', 'a-bridge-name-too-long'], /^userfan up: --bridge "a-bridge-name-too-long": must be 1-15 characters/],
      [['trace'], 'userfan trace: no fan is up in this network namespace: nothing to trace'],
      [['trace', '--filter', '250.0.28'], 'userfan trace: --filter "250.0.28": is not an IPv4 address (four decimal octets 0-255)'],
      [['trace', '--filter', '0.0.0.0'], /^userfan trace: --filter "0.0.0.0": must be a host address/],
      [['explain', '250.0.27.3', '--from', '250.0.28.3', '-o', '250.0.0.0/8', '-u', A.underlayCidr], 'userfan explain: --from walks a packet through the fans that are up: leave out -o/-u'],
      [['stats', '--watch', '--interval', '50'], 'userfan stats: --interval "50": must be a whole number from 100 to 60000'],
      [['down', '-o', '250.0.0.0/8', '-u', A.underlayCidr], 'userfan down: fan "250.0.0.0/8 over 198.18.0.0/16": is not up on this host (see userfan show)'],
    ];
    await expectAllRefused(topo, A, cases.map(([args, message]) => ({ args, message })));
  });

  it('up when a bridge of the fan\'s name exists holding no fan address (nothing to adopt): exit 2, one line, nothing made', async () => {
    await topo.exec(A, ['ip', 'link', 'add', 'name', 'fan-250-0-28', 'type', 'bridge']);
    try {
      await expectRefused(topo, A, ['up', '-o', '250.0.0.0/8', '-u', A.underlayCidr, '--workers', '1'], /^userfan up: bridge "fan-250-0-28": exists with no fan address to adopt: .*give it 250\.0\.28\.1\/24/);
    } finally {
      await topo.exec(A, ['ip', 'link', 'del', 'dev', 'fan-250-0-28']);
    }
  });

  it('down with no fan up: "no fans are up", exit 0, nothing changed', async () => {
    const before = await hostState(topo, A);
    const r = await cli(['down', '-e']);
    expect([r.code, r.stdout, r.stderr]).toEqual([0, 'no fans are up\n', '']);
    expect(await hostState(topo, A)).toEqual(before);
  });

  it('up -a and down -a read /etc/network/fan by default (a private copy), bring up the enabled fans and take them down', async () => {
    const etcBefore = etcNetwork();
    const clean = await hostState(topo, A);
    // Without the file: up -a names the default path.
    await expectRefused(topo, A, ['up', '-a'], 'userfan up: --config "/etc/network/fan": cannot be read (ENOENT)', withEtcNetwork(undefined, []));
    // fanctl 0.12's order and 0.3's, a comment, and a fan that is off.
    const conf = `# two fans\n${A.underlayCidr} 250.0.0.0/8 --enable\n251.1.0.0/16 ${A.underlay2}/24 dhcp\n252.0.0.0/8 ${A.underlayCidr} off\n`;
    const p = topo.spawn(A, withEtcNetwork(conf, ['node', CLI, 'up', '-a', '--workers', '1']));
    daemons.push({ host: A, process: p });
    await p.waitForLine(/"event":"ready"/, 20_000);
    const rows = JSON.parse((await cli(['show', '--json'])).stdout) as { bridge: string; overlay: string; flags: string; pid: number }[];
    expect(rows.map((r) => [r.bridge, r.overlay, r.flags, r.pid])).toEqual([
      ['fan-250-0-28', '250.0.0.0/8', 'enable auto', p.pid],
      ['fan-251-1-28', '251.1.0.0/16', 'dhcp auto', p.pid],
    ]);
    expect((await hostState(topo, A)).devices.sort()).toEqual(['fan-250-0-28', 'fan-251-1-28', 'uf-250-0-28']);
    // down -a: the same default file.
    const down = await topo.exec(A, withEtcNetwork(conf, ['node', CLI, 'down', '-a']), { allowFail: true, timeoutMs: 30_000 });
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toMatch(/^250\.0\.0\.0\/8 over 198\.18\.0\.0\/16, 251\.1\.0\.0\/16 over 198\.18\.7\.0\/24: down \(stopped, pid \d+\)\n$/);
    await p.wait(5000);
    expect(p.running).toBe(false);
    expect(await hostState(topo, A)).toEqual(clean);
    // The machine's own /etc/network never saw any of it.
    expect(etcNetwork()).toEqual(etcBefore);
  });

  it('down that cannot remove what a daemon made: exit 1, one line per leftover, still listed; the next down removes it', async () => {
    const clean = await hostState(topo, A);
    const d = await startDaemon(topo, A, ['-o', '250.0.0.0/8', '-u', A.underlayCidr, '--workers', '1']);
    d.process.kill('SIGKILL');
    await d.process.wait(5000);
    // Without CAP_NET_ADMIN, down can read the state but remove nothing.
    const r = await topo.exec(A, ['setpriv', '--inh-caps=-all', '--bounding-set=-net_admin', '--', 'node', CLI, 'down', '-e'], { allowFail: true });
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(/^250\.0\.0\.0\/8 over 198\.18\.0\.0\/16: down \(cleaned-after-crash, pid \d+\)\n$/);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines.map((l) => /^ {2}could not remove (nft table \S+|bridge \S+|tun \S+): .*not permitted/.exec(l)?.[1]), r.stderr).toEqual([
      'nft table userfan_fan_250_0_28', 'bridge fan-250-0-28', 'tun uf-250-0-28',
    ]);
    const left = await hostState(topo, A);
    expect(left.devices.sort()).toEqual(['fan-250-0-28', 'uf-250-0-28']);
    expect(left.show).toMatchObject([{ bridge: 'fan-250-0-28', state: 'stale' }]);
    const again = await cli(['down', '-e']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/: down \(cleaned-after-crash, pid \d+\)\n$/);
    expect(await hostState(topo, A)).toEqual(clean);
  });

  it('stats --watch redraws the counters every interval, with rates, as traffic flows', async () => {
    daemons.push(await startDaemon(topo, A, ['-o', '250.0.0.0/8', '-u', A.underlayCidr, '--workers', '1']));
    daemons.push(await startDaemon(topo, B, ['-o', '250.0.0.0/8', '-u', B.underlayCidr, '--workers', '1']));
    const a = await topo.addContainer(A);
    const b = await topo.addContainer(B);
    const watch = topo.spawn(A, ['node', CLI, 'stats', '--watch', '--interval', '200']);
    try {
      const frames = () => watch.lines.filter((l) => l.line.startsWith('\x1b[H\x1b[2J'));
      await waitFor('two frames of stats --watch', () => frames().length >= 2);
      expect((await topo.ping(a, b.address, { count: 5 })).received).toBe(5);
      // Frames drawn after the last reply came back (a frame in progress may have read the counters before).
      const after = frames().length;
      await waitFor('two more frames', () => frames().length >= after + 2);
    } finally {
      await watch.stop();
    }
    const text = watch.lines.map((l) => l.line);
    // Each frame: the daemon's line right after the clear-screen, then the table; totals never go back.
    const totals = text.filter((l) => /^ {2}total\s/.test(l)).map((l) => l.trim().split(/\s+/).slice(1).map(Number));
    expect(totals.length).toBeGreaterThanOrEqual(4);
    expect(text.filter((l) => l.startsWith('\x1b[H\x1b[2J')).every((l) => /^\x1b\[H\x1b\[2Juf-250-0-28 \(pid \d+, 1 worker/.test(l))).toBe(true);
    for (let i = 1; i < totals.length; i++) expect(totals[i][0]).toBeGreaterThanOrEqual(totals[i - 1][0]);
    // The 5 echoes went out (tx) and their replies came in (rx), and some frame's rate saw them.
    expect(totals.at(-1)![0] - totals[0][0]).toBeGreaterThanOrEqual(5);
    expect(totals.at(-1)![2] - totals[0][2]).toBeGreaterThanOrEqual(5);
    expect(text.some((l) => /^ {2}rates: tx [1-9]\d* pkt\/s/.test(l))).toBe(true);
  });
});
