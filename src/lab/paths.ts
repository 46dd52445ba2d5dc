/**
 * Where the package is, for the lab and the bench alike, whether the caller runs from dist/ (the CLI, the
 * bench) or from the TypeScript sources (vitest): the directory of userfan's package.json above this file.
 * Compiled programs are always taken from its dist/, which `npm run build` writes.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(): string {
  const here = fileURLToPath(import.meta.url);
  for (let dir = dirname(here); ; ) {
    const pj = join(dir, 'package.json');
    try {
      if (existsSync(pj) && JSON.parse(readFileSync(pj, 'utf8')).name === 'userfan') return dir;
    } catch {
      /* unreadable: keep looking */
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`userfan: cannot find userfan's package.json above ${here}`);
    dir = up;
  }
}

export const PACKAGE_ROOT = findPackageRoot();
/** A compiled module, by its path under src/ or bench/ without extension: dist('src/main'). */
export const dist = (path: string) => join(PACKAGE_ROOT, 'dist', `${path}.js`);
