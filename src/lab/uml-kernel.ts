// Finding Debian's user-mode Linux (linux.uml, Linux 6.1 with ipip.ko) and whether it can run programs on
// this machine: what the lab needs before it boots a guest, and what goes before linux.uml on its command
// line. The boot probe runs once per process; its verdict is kept.
//
// A boot that is merely slow (a loaded machine) gets UML_BOOT_DEADLINE_MS; a boot that fails says why, with
// the tail of the guest kernel's console. USERFAN_LAB_UML_FAIL=1 makes the boot fail on purpose (the probe
// boots with /bin/false as init, so the kernel panics for real): how to show that a test needing a real
// kernel fails, with the reason, rather than passing or skipping, when the guest cannot boot.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { PACKAGE_ROOT } from './paths.js';
import { xstateShim } from './uml-xstate.js';

export const UML_BIN = '/usr/bin/linux.uml';
export const UML_MODULES_DIR = '/usr/lib/uml/modules';
export const UML_INSTALL_HINT = 'apt-get install -y user-mode-linux kmod';
/** How long a guest may take to boot before the lab calls it stuck: generous, for a machine under load. */
export const UML_BOOT_DEADLINE_MS = 300_000;
/** Set to 1 to make every boot of the lab's user-mode Linux fail on purpose (see the top of this file). */
export const UML_FAIL_ENV = 'USERFAN_LAB_UML_FAIL';

/** The guest's init script (not compiled by tsc: it lives in src/lab/ and is used from there). */
export function umlInitPath(): string {
  return join(PACKAGE_ROOT, 'src', 'lab', 'uml-init.sh');
}

/** Why user-mode Linux cannot run here, or undefined when it can. */
export function umlMissing(): string | undefined {
  if (!existsSync(UML_BIN)) return `${UML_BIN} is missing: ${UML_INSTALL_HINT}`;
  let versions: string[] = [];
  try {
    versions = readdirSync(UML_MODULES_DIR);
  } catch {
    /* none */
  }
  if (!versions.some((v) => existsSync(join(UML_MODULES_DIR, v, 'kernel', 'net', 'ipv4', 'ipip.ko'))))
    return `no ipip.ko under ${UML_MODULES_DIR}: ${UML_INSTALL_HINT}`;
  if (!existsSync('/sbin/modprobe') && !existsSync('/usr/sbin/modprobe')) return `modprobe is missing: ${UML_INSTALL_HINT}`;
  if (!existsSync(umlInitPath())) return `${umlInitPath()} is missing`;
  return umlBootProblem();
}

let bootProblem: string | null | undefined;
/** LD_PRELOAD for the guest kernel's process, when this CPU needs the xstate shim; decided by umlBootProblem(). */
let preload: string | undefined;

/**
 * Boots the guest kernel with /bin/true as init (optionally under a preload): its console output, and
 * whether it ran into the deadline. With USERFAN_LAB_UML_FAIL=1, init is /bin/false: a boot that fails.
 */
function bootTrue(withPreload?: string): { out: string; status: number | null; timedOut: boolean } {
  const dir = mkdtempSync(join(tmpdir(), 'umprobe-'));
  const init = process.env[UML_FAIL_ENV] === '1' ? '/bin/false' : '/bin/true';
  try {
    const r = spawnSync(
      'timeout',
      ['-k', '5', String(UML_BOOT_DEADLINE_MS / 1000), ...(withPreload ? ['env', `LD_PRELOAD=${withPreload}`] : []), UML_BIN, 'mem=64M', 'rootfstype=hostfs', 'rootflags=/', 'ro', `uml_dir=${dir}`, `umid=probe-${process.pid}`, `init=${init}`, 'con=null', 'con0=null,fd:1'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 16 << 20 },
    );
    // timeout(1) exits 124 when the deadline ran out (137 when it had to SIGKILL).
    return { out: `${r.stdout ?? ''}${r.stderr ?? ''}`, status: r.status, timedOut: r.status === 124 || r.status === 137 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The last lines of a boot's console, for a problem report. */
function consoleTail(out: string, lines = 20): string {
  const tail = out.trimEnd().split('\n').slice(-lines).join('\n');
  return `\n--- ${UML_BIN} console (last ${lines} lines) ---\n${tail || '(nothing)'}`;
}

/**
 * Boots the guest kernel once per process with /bin/true as init: why it cannot run a program, or
 * undefined. Debian's user-mode Linux 6.1 cannot on CPUs with a large XSAVE area (AMX tiles): its guest
 * processes die at their first context switch ("ptrace set fp regs failed, errno = 14", see
 * src/lab/uml-xstate.c). Then the guest runs under the xstate shim, if that makes it work.
 */
export function umlBootProblem(): string | undefined {
  if (bootProblem !== undefined) return bootProblem ?? undefined;
  const ok = (out: string) => /exitcode=0x00000000/.test(out);
  const first = bootTrue();
  if (ok(first.out)) {
    bootProblem = null;
    return undefined;
  }
  const fp = first.out.match(/ptrace set fp regs failed[^\n]*/)?.[0];
  if (fp) {
    const shim = xstateShim();
    if (shim.path && ok(bootTrue(shim.path).out)) {
      preload = shim.path;
      bootProblem = null;
      return undefined;
    }
    const amx = /\bamx_tile\b/.test(readFileSync('/proc/cpuinfo', 'utf8')) ? ' (this CPU has AMX tiles)' : '';
    bootProblem = `${UML_BIN} cannot run a program on this machine: ${fp}: user-mode Linux ${umlVersion()} cannot hand this CPU's FPU state to its processes${amx}, and the xstate shim did not help (${shim.error ?? 'it booted no better'})${consoleTail(first.out)}`;
    return bootProblem;
  }
  if (first.timedOut) {
    bootProblem = `${UML_BIN} did not finish booting /bin/true within ${UML_BOOT_DEADLINE_MS / 1000} s (status ${first.status})${consoleTail(first.out)}`;
    return bootProblem;
  }
  const exit = first.out.match(/exitcode=0x[0-9a-f]+/)?.[0];
  const why = process.env[UML_FAIL_ENV] === '1' ? ` (${UML_FAIL_ENV}=1: init was /bin/false on purpose)` : '';
  bootProblem = `${UML_BIN} cannot run a program on this machine: ${exit ?? `no init exit seen (status ${first.status})`}${why}${consoleTail(first.out)}`;
  return bootProblem;
}

/** What to put before UML_BIN on a command line: `env LD_PRELOAD=…` when this CPU needs the shim. */
export function umlLauncher(): string[] {
  umlBootProblem();
  return preload ? ['env', `LD_PRELOAD=${preload}`] : [];
}

function umlVersion(): string {
  try {
    return readdirSync(UML_MODULES_DIR).join(', ') || '?';
  } catch {
    return '?';
  }
}
