/**
 * `userfan demo` (what `npm start` runs; root): both fan types end to end with --json. The demo's own
 * checks (echo, a byte-exact transfer) decide `ok`; the outer packet is checked here, as tshark decoded
 * it. And as people run it: the steps it prints, and with --keep a lab that stays up (a ping through it
 * works) until SIGINT, then goes.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ProcessHandle, run } from '../../src/lab/exec.js';
import { CLI } from '../../src/lab/userfan-lab.js';
import { waitFor } from '../helpers/wait.js';

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

  it('without --json, as npm start runs it: the four steps and OK; with --keep the lab stays up until SIGINT, then goes', async () => {
    const demo = new ProcessHandle(['node', CLI, 'demo', '--keep', '--bytes', '4000000']);
    try {
      // The last of the commands it suggests for the kept lab.
      await demo.waitForLine(/^ {2}ip netns exec \S+ tshark /, 120_000);
      const out = demo.lines.filter((l) => l.stream === 'stdout').map((l) => l.line);
      const has = (re: RegExp) => expect(out.some((l) => re.test(l)), `${re}\n${out.join('\n')}`).toBe(true);
      has(/^ {3}host A 198\.18\.0\.28 owns 250\.0\.28\.0\/24 on bridge fan-250-0-28 \(250\.0\.28\.1\); userfan up -o 250\.0\.0\.0\/8 -u 198\.18\.0\.28\/16$/);
      has(/^ {3}a packet for 250\.0\.27\.3: owner 198\.18\.0\.27, so it leaves A as IPv4 198\.18\.0\.28 > 198\.18\.0\.27 protocol 4$/);
      has(/^ {3}3\/3 replies/);
      has(/^ {5}outer 198\.18\.0\.28 > 198\.18\.0\.27 protocol 4 \| inner 250\.0\.28\.3 > 250\.0\.27\.3 ICMP echo request$/);
      has(/^ {3}match; /);
      has(/^4\. userfan show on host A: [1-9]\d* packets encapsulated, [1-9]\d* decapsulated, 0 dropped$/);
      has(/^OK: container 250\.0\.28\.3 on host A reached 250\.0\.27\.3 on host B through userfan/);
      // The lab it keeps: the ping it suggests works.
      const suggested = out.find((l) => /^ {2}ip netns exec \S+ ping 250\.0\.27\.3$/.test(l))!.trim().split(' ');
      const ns = suggested[3];
      const ping = await run([...suggested.slice(0, 4), 'ping', '-c', '1', '-W', '2', '250.0.27.3'], { allowFail: true });
      expect(ping.code, ping.stdout + ping.stderr).toBe(0);
      // Ctrl-C: the lab goes, and the exit status says it was interrupted (128 + SIGINT), as the lab's
      // signal handling has it.
      demo.kill('SIGINT');
      expect(await demo.wait(30_000)).toBe(130);
      expect(demo.lines.map((l) => l.line)).toContain('Tearing down the lab…');
      await waitFor(`namespace ${ns} to be gone`, async () => !(await run(['ip', 'netns', 'list'])).stdout.split('\n').some((l) => l.split(' ')[0] === ns), { timeoutMs: 5000 });
    } finally {
      await demo.stop(10_000);
    }
  }, 150_000);
});
