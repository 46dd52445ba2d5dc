// The xstate shim (src/lab/uml-xstate.c, see there) that lets Debian's user-mode Linux 6.1 run programs on
// CPUs with a large XSAVE area, compiled on demand into build/ next to the addon.
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { PACKAGE_ROOT } from './paths.js';

/** The shim's path, built if missing or older than its source; or why it could not be built. */
export function xstateShim(): { path?: string; error?: string } {
  const src = join(PACKAGE_ROOT, 'src', 'lab', 'uml-xstate.c');
  const out = join(PACKAGE_ROOT, 'build', 'uml-xstate.so');
  try {
    if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return { path: out };
    mkdirSync(dirname(out), { recursive: true });
    // Built under a name of its own, then renamed: test files run in parallel and may build it at once.
    const tmp = `${out}.${process.pid}.tmp`;
    const r = spawnSync('cc', ['-shared', '-fPIC', '-O2', '-o', tmp, src, '-ldl'], { encoding: 'utf8' });
    if (r.status !== 0) {
      rmSync(tmp, { force: true });
      return { error: `cc failed: ${(r.stderr || r.error?.message || '').trim().split('\n')[0]}` };
    }
    renameSync(tmp, out);
    return { path: out };
  } catch (e) {
    return { error: (e as Error).message };
  }
}
