// userfan against the real Linux ipip driver (user-mode Linux), both ways: what `npm run interop` proves.
import { existsSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { runInterop } from '../../src/lab/interop.js';
import { UML_BOOT_DEADLINE_MS, umlMissing } from '../../src/lab/uml-kernel.js';
import { CLI } from '../../src/lab/userfan-lab.js';

// Every check runInterop makes must be there and pass; the informational ones (`info`) are not counted.
const REQUIRED = [
  'ICMP A→B', 'ICMP B→A', 'IP-in-IP on the wire', 'UDP A→B', 'UDP B→A', 'TCP 16 MiB A→B', 'TCP 16 MiB B→A', 'kernel ipip counters',
  'spoofed packet from the kernel host: userfan drops it', 'spoofed packet to the kernel host: the kernel does not deliver it',
  'userfan stops cleanly',
];

// These must run wherever the suite runs (CI installs user-mode-linux and builds dist/): a guest that cannot
// boot, or a missing build, is a failure with the reason, never a skip. USERFAN_LAB_UML_FAIL=1 makes the
// boot fail on purpose, to see that.
// The defaults send TCP super-packets whole by MAC (TX GSO): the kernel cuts them on the way out to the guest.
// The second run sends every packet through the raw socket (up --send raw): the other path out.
describe.each([[[]], [['--send', 'raw']]] as const)('interop with kernel ipip, userfan up %j', (userfanArgs) => {
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: npm run build`);
    const problem = umlMissing(); // boots the guest kernel once per file (bounded by the boot deadline)
    if (problem) throw new Error(`user-mode Linux cannot boot here: ${problem}`);
  }, UML_BOOT_DEADLINE_MS + 30_000);

  it('userfan and Linux ipip talk both ways; both refuse a spoofed inner source', async () => {
    const lines: string[] = [];
    const r = await runInterop({ log: (m) => lines.push(m), userfanArgs: [...userfanArgs] });
    const failed = r.checks.filter((c) => !c.ok && !c.info);
    expect(failed, `${r.summary}\n${lines.join('\n')}`).toEqual([]);
    const names = r.checks.map((c) => c.name);
    for (const n of REQUIRED) expect(names, `${r.summary}\n${lines.join('\n')}`).toContain(n);
    if (userfanArgs.length) expect(names).not.toContain('TX GSO');
    else expect(names).toContain('TX GSO');
    expect(r.ok).toBe(true);
    expect(r.summary).toMatch(/^interop: PASS/);
  }, UML_BOOT_DEADLINE_MS + 300_000);
});
