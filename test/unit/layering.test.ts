/**
 * One-way layering of src/ (docs/architecture.md): pure modules at the bottom (the mapping, the wire
 * format), then I/O (the TUN device, the underlay), the data plane, the daemon, the debugging aids and the
 * CLI; the lab only imports from the product, never the reverse; no cycles between files.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cycles, importGraph, importsOf, layerViolations } from '../helpers/imports.js';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

describe('layering of src/', () => {
  const graph = importGraph(SRC);

  it('reads the real tree (the data plane imports the device and the underlay)', () => {
    expect(graph.size).toBeGreaterThan(40);
    expect(graph.get('dataplane/worker.ts')).toEqual(expect.arrayContaining(['tun/device.ts']));
  });

  it('has no import from a lower layer to a higher one, and the product never imports the lab', () => {
    expect(layerViolations(graph)).toEqual([]);
  });

  it('has no import cycle between files', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('catches a forbidden import added to the tree', () => {
    const bent = new Map(graph);
    bent.set('wire/ipip.ts', [...(graph.get('wire/ipip.ts') ?? []), 'dataplane/worker.ts']);
    bent.set('control/hostnet.ts', [...(graph.get('control/hostnet.ts') ?? []), 'lab/exec.ts']);
    bent.set('tun/device.ts', [...(graph.get('tun/device.ts') ?? []), 'underlay/raw.ts']);
    expect(layerViolations(bent).sort()).toEqual([
      'control/hostnet.ts -> lab/exec.ts: control (layer 5) may not import lab (layer 8)',
      'tun/device.ts -> underlay/raw.ts: tun (layer 3) may not import underlay (layer 3)',
      'wire/ipip.ts -> dataplane/worker.ts: wire (layer 1) may not import dataplane (layer 4)',
    ]);
  });

  it('catches a cycle between files of one folder', () => {
    const g = new Map([
      ['fan/a.ts', ['fan/b.ts']],
      ['fan/b.ts', ['fan/c.ts']],
      ['fan/c.ts', ['fan/a.ts']],
    ]);
    expect(cycles(g)).toEqual([['fan/a.ts', 'fan/b.ts', 'fan/c.ts', 'fan/a.ts']]);
  });

  it('reads imports, re-exports and import(), not comments', () => {
    const text = [
      "import { a } from './a.js';",
      "import type { B } from '../b/b.js';",
      "export { c } from './c.js';",
      "import './side.js';",
      "const d = await import('./d.js');",
      "// import { e } from './e.js';",
      "/* import { f } from './f.js'; */",
      "import { readFileSync } from 'node:fs';",
    ].join('\n');
    expect(importsOf(text)).toEqual(['./a.js', '../b/b.js', './c.js', './side.js', './d.js']);
  });
});
