/**
 * `up -a` with the config lines a host brings from Ubuntu (issue 24), on lab host A (198.18.0.28/16 and
 * 198.18.7.28/24): fanctl 0.12's `UNDERLAY OVERLAY --dhcp --enable`, 0.3's `OVERLAY UNDERLAY dhcp
 * host-reserve 2 bridge NAME`, each form with its CIDRs the other way round, and `up --bridge=NAME`. Each
 * fan comes up with the bridge, address and dnsmasq its flags ask for, `show` prints its Flags as 0.12 does,
 * and SIGTERM leaves the namespace as it was. A file with an unknown flag (even after a good line) exits 2
 * with one line naming the flag and the known ones, and makes nothing. The lab goes in afterAll.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFanTopology, type FanTopology, type Host } from '../../src/lab/topology.js';
import { CLI } from '../../src/lab/userfan-lab.js';

describe('up -a reads fanctl 0.12 and 0.3 config lines', () => {
  let topo: FanTopology;
  let A: Host;
  let dir: string;
  beforeAll(async () => {
    topo = await createFanTopology({ secondWidth: true });
    A = topo.host('A');
    dir = mkdtempSync(join(tmpdir(), `${topo.prefix}-conf-`));
  });
  afterAll(async () => {
    await topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const cli = (args: string[]) => topo.exec(A, [process.execPath, CLI, ...args], { allowFail: true, timeoutMs: 30_000 });
  /** What `up` could make in A: devices, addresses, routes, nft tables, processes, daemons `show` knows of. */
  const made = async () => ({
    links: (await topo.exec(A, ['ip', '-o', 'link', 'show'])).stdout,
    addresses: (await topo.exec(A, ['ip', '-o', 'addr', 'show'])).stdout,
    routes: (await topo.exec(A, ['ip', 'route', 'show', 'table', 'all'])).stdout,
    nft: (await topo.exec(A, ['nft', 'list', 'tables'])).stdout,
    commands: await commandsInA(),
    daemons: JSON.parse((await cli(['show', '--json'])).stdout),
  });
  /** The command names of the processes in A's namespace (dnsmasq for --dhcp). */
  const commandsInA = async () => {
    const pids = (await topo.exec(undefined, ['ip', 'netns', 'pids', A.ns])).stdout.split(/\s+/).filter(Boolean);
    return pids.flatMap((p) => {
      try {
        return [readFileSync(`/proc/${p}/comm`, 'utf8').trim()];
      } catch {
        return [];
      }
    }).sort();
  };
  const config = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  const cases: { what: string; args: (br: string) => string[]; line?: (br: string) => string; bridge: (br: string) => string; address: string; flags: (br: string) => string; dnsmasq: boolean }[] = [
    {
      what: "0.12's line: underlay first, --dhcp --enable",
      line: () => '# Underlay      Overlay      Flags\n198.18.0.0/16  250.0.0.0/8  --dhcp --enable\n',
      args: () => [], bridge: () => 'fan-250-0-28', address: '250.0.28.1/24', flags: () => 'dhcp enable auto', dnsmasq: true,
    },
    {
      what: "0.3's line: overlay first, bare words",
      line: (br) => `250.0.0.0/8 198.18.0.28/16 dhcp host-reserve 2 bridge ${br}\n`,
      args: () => [], bridge: (br) => br, address: '250.0.28.1/24', flags: (br) => `dhcp bridge=${br} host-reserve=2 auto`, dnsmasq: true,
    },
    {
      what: "0.3's bare words with the CIDRs reversed (underlay first)",
      line: (br) => `198.18.7.28/24 250.1.0.0/16 bridge ${br}\n`,
      args: () => [], bridge: (br) => br, address: '250.1.28.1/24', flags: (br) => `bridge=${br} auto`, dnsmasq: false,
    },
    {
      what: "0.12's --flags with the CIDRs reversed (overlay first)",
      line: (br) => `250.0.0.0/8 198.18.0.28/16 --bridge=${br} --host-reserve=3 --type=ipip --enable\n`,
      args: () => [], bridge: (br) => br, address: '250.0.28.1/24', flags: (br) => `bridge=${br} host-reserve=3 enable auto`, dnsmasq: false,
    },
    {
      what: 'up -o -u --bridge=NAME (with =, as 0.12 spells it)',
      args: (br) => ['-o', '250.0.0.0/8', '-u', '198.18.0.28/16', `--bridge=${br}`],
      bridge: (br) => br, address: '250.0.28.1/24', flags: (br) => `bridge=${br}`, dnsmasq: false,
    },
  ];
  for (const [i, c] of cases.entries()) {
    it(`${c.what}: the fan comes up, show's Flags say ${c.flags('NAME')}, SIGTERM leaves nothing`, async () => {
      const br = topo.lab.ifName(`b${i}`);
      const before = await made();
      expect(before.daemons).toEqual([]);
      const args = c.line ? ['-a', '--config', config(`case${i}`, c.line(br))] : c.args(br);
      const daemon = topo.spawn(A, [process.execPath, CLI, 'up', ...args, '--workers', '1']);
      try {
        await daemon.waitForLine(/"event":"ready"/, 20_000);
        const addr = (await topo.exec(A, ['ip', '-o', '-4', 'addr', 'show', 'dev', c.bridge(br)])).stdout;
        expect(addr).toContain(`inet ${c.address} `);
        const [row, ...others] = JSON.parse((await cli(['show', '--json'])).stdout);
        expect(others).toEqual([]);
        expect(row).toMatchObject({ bridge: c.bridge(br), flags: c.flags(br) });
        // The text table, as a script that greps `fanctl show` reads it: Bridge Underlay Overlay Flags.
        const text = (await cli(['show'])).stdout.split('\n');
        expect(text[0]).toMatch(/^Bridge\s+Underlay\s+Overlay\s+Flags\s+Workers/);
        const underlay = row.overlay === '250.1.0.0/16' ? '198.18.7.28/24' : '198.18.0.28/16';
        expect(text[1]).toMatch(new RegExp(`^${c.bridge(br)}\\s+${underlay}\\s+${row.overlay}\\s+${c.flags(br)}\\s{2,}1\\s`));
        expect((await commandsInA()).includes('dnsmasq')).toBe(c.dnsmasq);
      } finally {
        await daemon.stop(10_000);
      }
      expect(daemon.exitCode, daemon.tail()).toBe(0);
      expect(await made()).toEqual(before);
    });
  }

  const refusals: [string, string, RegExp][] = [
    ['an unknown flag after a good line', '198.18.0.0/16 250.0.0.0/8 --dhcp --enable\n198.18.7.28/24 250.1.0.0/16 --enable --frobnicate\n',
      /^userfan up: line 2 "198\.18\.7\.28\/24 250\.1\.0\.0\/16 --enable --frobnicate": unknown flag --frobnicate; known flags: --dhcp, --enable, --bridge=NAME, --host-reserve=N, --type=ipip\|vxlan, and 0\.3's dhcp, off, bridge NAME, host-reserve N$/],
    ['a misspelt 0.3 word', '250.0.0.0/8 198.18.0.28/16 dchp\n', /^userfan up: line 1 ".*": unknown flag dchp; known flags: --dhcp,/],
    ['an unknown --type', '198.18.0.0/16 250.0.0.0/8 --type=gre\n', /^userfan up: line 1 ".*": type gre is not known: it must be ipip or vxlan$/],
    ['two prefixes of one length', '198.18.0.0/16 250.0.0.0/16 --dhcp\n', /^userfan up: line 1 ".*": both prefixes are \/16: the overlay must be the shorter one/],
  ];
  for (const [what, text, message] of refusals) {
    it(`refuses ${what}: exit 2, one line, nothing made`, async () => {
      const before = await made();
      const r = await cli(['up', '-a', '--config', config('bad', text), '--workers', '1']);
      expect(r.code, r.stderr + r.stdout).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(message);
      expect(r.stdout).toBe('');
      expect(await made()).toEqual(before);
    });
  }

  it('refuses up --bridge= (empty) and a bad name: exit 2, one line, nothing made', async () => {
    const before = await made();
    for (const bad of ['--bridge=', '--bridge=has space']) {
      const r = await cli(['up', '-o', '250.0.0.0/8', '-u', '198.18.0.28/16', bad, '--workers', '1']);
      expect(r.code, r.stderr + r.stdout).toBe(2);
      expect(r.stderr.trim()).toMatch(/^userfan up: --bridge "[^"]*": must be 1-15 characters of letters, digits, \. _ -$/);
    }
    expect(await made()).toEqual(before);
  });
});
