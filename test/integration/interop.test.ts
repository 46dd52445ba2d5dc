// userfan against the real Linux ipip driver (user-mode Linux), both ways: what `npm run interop` proves.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runInterop } from '../../src/lab/interop.js';
import { packageRoot, umlMissing } from '../../src/lab/uml.js';

const missing = umlMissing();
const cli = join(packageRoot(), 'dist/src/main.js');
const why = missing ?? (existsSync(cli) ? undefined : `${cli} is missing (npm run build)`);
if (why) console.warn(`interop test skipped: ${why}`);

// The second run receives through XDP and AF_XDP (up --recv xdp): the kernel's frames take the other path in.
// The third sends by MAC with TX GSO (up --send packet): the kernel cuts userfan's whole frames on the way out.
describe.skipIf(!!why).each([[[]], [['--recv', 'xdp']], [['--send', 'packet']]] as const)('interop with kernel ipip, userfan up %j', (userfanArgs) => {
  it('userfan and Linux ipip talk both ways; both refuse a spoofed inner source', async () => {
    const lines: string[] = [];
    const r = await runInterop({ log: (m) => lines.push(m), userfanArgs: [...userfanArgs] });
    const failed = r.checks.filter((c) => !c.ok && !c.info);
    expect(failed, `${r.summary}\n${lines.join('\n')}`).toEqual([]);
    const names = r.checks.map((c) => c.name);
    for (const n of ['ICMP A→B', 'ICMP B→A', 'UDP A→B', 'UDP B→A', 'TCP 16 MiB A→B', 'TCP 16 MiB B→A', 'kernel ipip counters']) expect(names).toContain(n);
    if (userfanArgs.join(' ') === '--send packet') expect(names).toContain('TX GSO');
    expect(r.ok).toBe(true);
    expect(r.summary).toMatch(/^interop: PASS/);
  }, 300_000);
});
