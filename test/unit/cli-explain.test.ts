/** `userfan explain` as a user runs it: the compiled CLI (npm test builds first). */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const cli = new URL('../../dist/src/main.js', import.meta.url).pathname;
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

describe('userfan explain', () => {
  it('gives the five fields as JSON for the three REFERENCE.md examples', () => {
    const cases: [string[], object][] = [
      [['250.0.27.3', '-o', '250.0.0.0/8', '-u', '172.30.0.28/16'], { address: '250.0.27.3', underlayHost: '172.30.0.27', slice: '250.0.27.0/24', bridge: 'fan-250-0-27', hostAddress: '250.0.27.1' }],
      [['99.6.7.8', '-o', '99.0.0.0/8', '-u', '10.88.3.4/16'], { underlayHost: '10.88.6.7', slice: '99.6.7.0/24' }],
      [['100.66.200.5', '-o', '100.64.0.0/10', '-u', '10.224.220.0/24'], { underlayHost: '10.224.220.11', slice: '100.66.192.0/18', hostAddress: '100.66.192.1' }],
    ];
    for (const [args, want] of cases) {
      const r = run('explain', ...args, '--json');
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject(want);
    }
  });
  it('marks an address of this host\'s own slice as local', () => {
    const r = run('explain', '250.0.28.9', '-o', '250.0.0.0/8', '-u', '172.30.0.28/16', '--json');
    expect(JSON.parse(r.stdout)).toMatchObject({ local: true, outer: null, bridge: 'fan-250-0-28' });
    expect(run('explain', '250.0.28.9', '-o', '250.0.0.0/8', '-u', '172.30.0.28/16').stdout).toContain('this host');
  });
  it('exits 2 with one line naming the field and the rule', () => {
    const bad: [string[], RegExp][] = [
      [['250.0.27.3', '-o', '250.0.0.0/33', '-u', '172.30.0.28/16'], /^userfan explain: overlay "250.0.0.0\/33": prefix length 33 is out of range/],
      [['250.0.27.3', '-o', '250.0.0.0/16', '-u', '172.30.0.28/16'], /^userfan explain: fan "250.0.0.0\/16 over 172.30.0.28\/16": each host's slice would be \/32/],
      [['250.0.27.3', '-o', '250.0.0.1/8', '-u', '172.30.0.28/16'], /^userfan explain: overlay "250.0.0.1\/8": host bits are set/],
      [['250.0.27.3', '-o', '250.0.0.0/8', '-u', '172.30.0.28/40'], /^userfan explain: underlay "172.30.0.28\/40": prefix length 40/],
      [['251.0.27.3', '-o', '250.0.0.0/8', '-u', '172.30.0.28/16'], /^userfan explain: address "251.0.27.3": is not in the overlay 250.0.0.0\/8/],
      [['250.0.27.3', '-u', '172.30.0.28/16'], /^userfan explain: missing -o OVERLAY/],
    ];
    for (const [args, line] of bad) {
      const r = run('explain', ...args);
      expect(r.status).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(line);
    }
  });
});
