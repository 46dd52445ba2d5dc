/**
 * The import graph of src/, read from the source text (static imports, re-exports and import()), and the
 * rules it must keep: layers by folder, the lab outside the product, no cycles between files.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/**
 * Folders from the bottom up. A file may import from its own folder or from a folder of a lower rank;
 * folders of equal rank (tun and underlay: the two boundaries) may not import each other. The lab sits
 * above the product and only imports from it; `main.ts` at src/'s root, the binary, joins the CLI and the
 * lab's demo.
 */
export const LAYERS: Record<string, number> = {
  fan: 0,
  wire: 1,
  io: 2,
  tun: 3,
  underlay: 3,
  dataplane: 4,
  control: 5,
  debug: 6,
  cni: 6.5,
  cli: 7,
  lab: 8,
  '.': 9,
};

/** A file's unit: its folder under src/ ('.' for files at src/'s root). */
export const unitOf = (file: string): string => {
  const parts = file.split('/');
  return parts.length > 1 ? parts[0] : '.';
};

/** Relative imports of each .ts file under `root`, as paths relative to root ('fan/fan.ts'). */
export function importGraph(root: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.ts')) graph.set(relative(root, p), importsOf(readFileSync(p, 'utf8')).map((s) => relative(root, resolve(dirname(p), s.replace(/\.js$/, '.ts')))));
    }
  };
  walk(root);
  return graph;
}

/** The relative specifiers a module's text imports or re-exports (comments are not imports). */
export function importsOf(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  for (const m of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)(['"])(\.{1,2}\/[^'"]+)\1/gm)) out.push(m[2]);
  return out;
}

/** Every import that breaks the layering, as 'from -> to: why'. */
export function layerViolations(graph: Map<string, string[]>, layers = LAYERS): string[] {
  const bad: string[] = [];
  for (const [from, tos] of graph) {
    const fu = unitOf(from);
    for (const to of tos) {
      const tu = unitOf(to);
      if (to.startsWith('..')) bad.push(`${from} -> ${to}: imports from outside src/`);
      else if (!(fu in layers) || !(tu in layers)) bad.push(`${from} -> ${to}: folder not in the layer list`);
      else if (fu !== tu && layers[tu] >= layers[fu]) bad.push(`${from} -> ${to}: ${fu} (layer ${layers[fu]}) may not import ${tu} (layer ${layers[tu]})`);
    }
  }
  return bad;
}

/** Import cycles between files, each as the list of files around it. */
export function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, 1);
    stack.push(f);
    for (const t of graph.get(f) ?? []) {
      if (state.get(t) === 1) found.push([...stack.slice(stack.indexOf(t)), t]);
      else if (!state.has(t) && graph.has(t)) visit(t);
    }
    stack.pop();
    state.set(f, 2);
  };
  for (const f of [...graph.keys()].sort()) if (!state.has(f)) visit(f);
  return found;
}
