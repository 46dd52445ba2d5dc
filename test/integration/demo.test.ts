/**
 * `userfan demo` (what `npm start` runs; root): both fan types end to end with --json. The demo's own
 * checks (echo, the outer packet tshark saw, a byte-exact transfer) decide `ok`; the outer packet is also
 * checked here, as tshark decoded it.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI } from '../../src/lab/userfan-lab.js';

describe('userfan demo --json', () => {
  it.each([
    ['ipip', /^198\.18\.0\.28,250\.0\.28\.3\t198\.18\.0\.27,250\.0\.27\.3\t4,1\t8$/],
    ['vxlan', /^198\.18\.0\.28,250\.0\.28\.3\t198\.18\.0\.27,250\.0\.27\.3\t17,1\t8$/],
  ])('--type %s: an echo, its outer packet on the wire, 4 MB byte-exact', (type, outer) => {
    const r = spawnSync('node', [CLI, 'demo', '--json', '--bytes', '4000000', '--type', type], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(s).toMatchObject({ ok: true, sha256Match: true, bytes: 4_000_000 });
    // The request as tshark decoded it on B's underlay: outer then inner addresses, protocols, ICMP type 8.
    expect(s.outerSeen[0]).toMatch(outer);
  }, 150_000);

  it('refuses a type it does not know, with one line and exit 2', () => {
    const r = spawnSync('node', [CLI, 'demo', '--type', 'gre'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe('userfan demo: --type "gre": must be ipip or vxlan');
  });
});
