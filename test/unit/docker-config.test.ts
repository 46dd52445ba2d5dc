/**
 * enable-docker's and disable-docker's files (src/control/docker-config.ts), in a temporary directory:
 * daemon.json merged (bridge, mtu; every other key kept) with a byte-for-byte backup, the fan made
 * persistent as a 0.12 line in the config file, and disable-docker putting back exactly the bytes there
 * were (or no file, where there was none). Every refusal is one line and leaves every file as it was.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfigText, parseFan, type LocalAddress } from '../../src/fan/parse.js';
import { backupPath, disableDocker, enableDocker, mergeDaemonJson, recordPath, type EnableRequest } from '../../src/control/docker-config.js';
import { configError as err } from '../helpers/config-error.js';

const noIfaces = (): LocalAddress[] => [];
const fan = parseFan('250.0.0.0/8', '198.18.0.28/16', {}, noIfaces);
// Tabs, CRLF, no final newline, a non-ASCII character: what a byte-for-byte restore must keep.
const ODD = '{\r\n\t"log-level":  "warn",\r\n\t"labels": ["été"],\r\n\t"bridge": "none"\r\n}';

let dir: string;
let req: EnableRequest;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'userfan-docker-'));
  req = { fan, underlayText: '198.18.0.28/16', bridge: 'fan-250-0-28', mtu: 1480, daemonJson: join(dir, 'daemon.json'), config: join(dir, 'fan') };
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const files = () => Object.fromEntries(readdirSync(dir).sort().map((f) => [f, readFileSync(join(dir, f), 'latin1')]));

describe('enable-docker and disable-docker on disk', () => {
  it('merges bridge and mtu, keeps a backup, appends a 0.12 line; disable puts back every byte', () => {
    writeFileSync(req.daemonJson, ODD);
    writeFileSync(req.config, '# fans\n10.0.0.0/8 198.18.7.28/24 dhcp'); // no final newline
    const before = files();
    const r = enableDocker(req);
    expect(r.already).toBe(false);
    expect(JSON.parse(readFileSync(req.daemonJson, 'utf8'))).toEqual({ 'log-level': 'warn', labels: ['été'], bridge: 'fan-250-0-28', mtu: 1480 });
    expect(readFileSync(backupPath(req.daemonJson), 'latin1')).toBe(before['daemon.json']);
    const config = readFileSync(req.config, 'utf8');
    expect(config).toBe('# fans\n10.0.0.0/8 198.18.7.28/24 dhcp\n198.18.0.28/16 250.0.0.0/8 --enable  # userfan enable-docker\n');
    expect(parseConfigText(config)[1]).toMatchObject({ overlay: '250.0.0.0/8', underlay: '198.18.0.28/16', flags: { enable: true } });
    const d = disableDocker(req.daemonJson, fan);
    expect(d).toMatchObject({ nothing: false, configLine: 'removed' });
    expect(files()).toEqual(before);
  });

  it('removes the daemon.json and config file it created', () => {
    enableDocker(req);
    expect(JSON.parse(readFileSync(req.daemonJson, 'utf8'))).toEqual({ bridge: 'fan-250-0-28', mtu: 1480 });
    expect(existsSync(backupPath(req.daemonJson))).toBe(false);
    disableDocker(req.daemonJson);
    expect(files()).toEqual({});
  });

  it('leaves a config line that was there before, and takes its line out from among lines added later', () => {
    writeFileSync(req.config, '250.0.0.0/8 198.18.0.28/16 bridge mybr\n');
    enableDocker(req);
    expect(readFileSync(req.config, 'utf8')).toBe('250.0.0.0/8 198.18.0.28/16 bridge mybr\n');
    expect(disableDocker(req.daemonJson)).toMatchObject({ configLine: 'kept' });
    expect(readFileSync(req.config, 'utf8')).toBe('250.0.0.0/8 198.18.0.28/16 bridge mybr\n');

    writeFileSync(req.config, '# a\n');
    enableDocker(req);
    writeFileSync(req.config, `${readFileSync(req.config, 'utf8')}# b\n`);
    disableDocker(req.daemonJson);
    expect(readFileSync(req.config, 'utf8')).toBe('# a\n# b\n');
  });

  it('is idempotent, and refuses a second fan while one is set up', () => {
    enableDocker(req);
    const after = files();
    expect(enableDocker(req).already).toBe(true);
    expect(files()).toEqual(after);
    const other = parseFan('250.1.0.0/16', '198.18.7.28/24', {}, noIfaces);
    expect(err(() => enableDocker({ ...req, fan: other, underlayText: '198.18.7.28/24' })).rule).toMatch(/earlier enable-docker for 250\.0\.0\.0\/8 over 198\.18\.0\.0\/16 .*run userfan disable-docker first/);
    expect(err(() => disableDocker(req.daemonJson, other)).rule).toMatch(/is not the fan enable-docker set Docker up for/);
    expect(files()).toEqual(after);
  });

  const refusals: [string, () => void, RegExp][] = [
    ['daemon.json that is not JSON', () => writeFileSync(req.daemonJson, '{"bridge": "x",}'), /^is not valid JSON \(.*\): fix it or move it away; nothing was changed$/],
    ['daemon.json that is not an object', () => writeFileSync(req.daemonJson, '[1]'), /^is not a JSON object/],
    ['daemon.json with bip', () => writeFileSync(req.daemonJson, '{"bip": "172.26.0.1/16"}'), /sets "bip", which Docker refuses together with "bridge"/],
    ['a backup without a record', () => writeFileSync(backupPath(req.daemonJson), '{}'), /userfan-backup exists but no record of it does/],
    ['a config line overlapping the fan', () => writeFileSync(req.config, '198.18.0.27/16 250.0.0.0/8\n'), /overlaps .*fan line 1 \(250\.0\.0\.0\/8 over 198\.18\.0\.27\/16\)/],
    ['the fan in the config with off', () => writeFileSync(req.config, '250.0.0.0/8 198.18.0.28/16 off\n'), /with off: remove off there first/],
    ['a config file with a bad line', () => writeFileSync(req.config, '198.18.0.0/16 250.0.0.0/8 --frobnicate\n'), /unknown flag --frobnicate.*; fix the file first$/],
  ];
  for (const [what, make, rule] of refusals) {
    it(`refuses ${what} with one line, changing nothing`, () => {
      make();
      const before = files();
      const e = err(() => enableDocker(req));
      expect(e.rule).toMatch(rule);
      expect(e.message).not.toContain('\n');
      expect(files()).toEqual(before);
    });
  }

  it('refuses a daemon.json whose directory does not exist (no Docker), creating nothing', () => {
    const e = err(() => enableDocker({ ...req, daemonJson: join(dir, 'docker', 'daemon.json') }));
    expect(e.message).toMatch(/^--daemon-json ".*docker\/daemon\.json": cannot be written: .*docker does not exist \(is Docker installed\?\)$/);
    expect(files()).toEqual({});
  });

  it('refuses to restore over a daemon.json edited since, changing nothing; nothing to undo without a record', () => {
    writeFileSync(req.daemonJson, ODD);
    enableDocker(req);
    writeFileSync(req.daemonJson, '{"bridge": "fan-250-0-28", "mtu": 1480, "debug": true}\n');
    const before = files();
    expect(err(() => disableDocker(req.daemonJson)).rule).toMatch(/^was changed since enable-docker, .*copy .*userfan-backup back by hand, then remove .*daemon\.json\.userfan; nothing was changed$/);
    expect(files()).toEqual(before);
    rmSync(recordPath(req.daemonJson));
    expect(disableDocker(req.daemonJson)).toEqual({ nothing: true });
  });

  it('keeps the order of the keys, replacing bridge and mtu where they stand', () => {
    expect(mergeDaemonJson('{"mtu": 1500, "a": 1, "bridge": "docker1"}', 'fan-250-0-28', 1480)).toBe('{\n  "mtu": 1480,\n  "a": 1,\n  "bridge": "fan-250-0-28"\n}\n');
  });

  it('gives a VXLAN fan (bridge slice.1/8) fixed-cidr, the slice, and disable takes it away again', () => {
    writeFileSync(req.daemonJson, ODD);
    const before = files();
    enableDocker({ ...req, bridge: 'fan-250', mtu: 1450, fixedCidr: '250.0.28.0/24' });
    expect(JSON.parse(readFileSync(req.daemonJson, 'utf8'))).toMatchObject({ bridge: 'fan-250', mtu: 1450, 'fixed-cidr': '250.0.28.0/24' });
    disableDocker(req.daemonJson);
    expect(files()).toEqual(before);
  });
});
