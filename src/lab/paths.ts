/**
 * Where the compiled programs are, whether the caller runs from dist/ (the CLI, the bench) or from the
 * TypeScript sources (vitest): always the package's dist/, which `npm run build` writes.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('userfan: cannot find package.json above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
}

export const PACKAGE_ROOT = packageRoot();
/** A compiled module, by its path under src/ or bench/ without extension: dist('src/main'). */
export const dist = (path: string) => join(PACKAGE_ROOT, 'dist', `${path}.js`);
