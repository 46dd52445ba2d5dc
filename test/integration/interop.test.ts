// userfan against the real Linux ipip driver (user-mode Linux), both ways: what `npm run interop` proves.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runInterop } from '../../src/lab/interop.js';
import { umlMissing } from '../../src/lab/uml-kernel.js';
import { CLI } from '../../src/lab/userfan-lab.js';

const missing = umlMissing();
const why = missing ?? (existsSync(CLI) ? undefined : `${CLI} is missing (npm run build)`);
if (why) console.warn(`interop test skipped: ${why}`);

// The defaults send TCP super-packets whole by MAC (TX GSO): the kernel cuts them on the way out to the guest.
// The second run sends every packet through the raw socket (up --send raw): the other path out.
describe.skipIf(!!why).each([[[]], [['--send', 'raw']]] as const)('interop with kernel ipip, userfan up %j', (userfanArgs) => {
  it('userfan and Linux ipip talk both ways; both refuse a spoofed inner source', async () => {
    const lines: string[] = [];
    const r = await runInterop({ log: (m) => lines.push(m), userfanArgs: [...userfanArgs] });
    const failed = r.checks.filter((c) => !c.ok && !c.info);
    expect(failed, `${r.summary}\n${lines.join('\n')}`).toEqual([]);
    const names = r.checks.map((c) => c.name);
    for (const n of ['ICMP A→B', 'ICMP B→A', 'UDP A→B', 'UDP B→A', 'TCP 16 MiB A→B', 'TCP 16 MiB B→A', 'kernel ipip counters']) expect(names).toContain(n);
    if (userfanArgs.length) expect(names).not.toContain('TX GSO');
    else expect(names).toContain('TX GSO');
    expect(r.ok).toBe(true);
    expect(r.summary).toMatch(/^interop: PASS/);
  }, 300_000);
});
