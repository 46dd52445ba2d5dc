/**
 * No function under src/ longer than MAX_LINES (issue 19: the data plane's loop had grown to 440 lines):
 * each function, method, arrow function and accessor, counted from its first line to its last, read with
 * the TypeScript compiler's parser.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const MAX_LINES = 120;
const SRC = fileURLToPath(new URL('../../src', import.meta.url));

/** Every function-like node of `text` with its name and length in lines. */
export function functionLengths(file: string, text: string): { name: string; lines: number }[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const out: { name: string; lines: number }[] = [];
  const visit = (n: ts.Node) => {
    if (ts.isFunctionLike(n) && 'body' in n && n.body) {
      const first = sf.getLineAndCharacterOfPosition(n.getStart(sf)).line;
      const last = sf.getLineAndCharacterOfPosition(n.getEnd()).line;
      const name = n.name && ts.isIdentifier(n.name) ? n.name.text : ts.isArrowFunction(n) || ts.isFunctionExpression(n) ? '(anonymous)' : '?';
      out.push({ name: `${file}:${first + 1} ${name}`, lines: last - first + 1 });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? tsFiles(p) : n.endsWith('.ts') ? [p] : [];
  });
}

describe('function length', () => {
  it(`no function under src/ is longer than ${MAX_LINES} lines`, () => {
    const long = tsFiles(SRC).flatMap((p) => functionLengths(relative(SRC, p), readFileSync(p, 'utf8'))).filter((f) => f.lines > MAX_LINES);
    expect(long).toEqual([]);
  });

  it('counts a long function, and the functions inside it too', () => {
    const body = Array.from({ length: 130 }, (_, i) => `  const x${i} = ${i};`).join('\n');
    const f = functionLengths('t.ts', `export function big() {\n${body}\n  const inner = () => {\n    return 1;\n  };\n}\n`);
    expect(f).toEqual([
      { name: 't.ts:1 big', lines: 135 },
      { name: 't.ts:132 (anonymous)', lines: 3 },
    ]);
  });
});
