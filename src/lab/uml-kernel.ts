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
    // linux.uml's own start-up checks (stderr) before the guest's console (stdout): the console ends the report.
    return { out: `${r.stderr ?? ''}${r.stdout ?? ''}`, status: r.status, timedOut: r.status === 124 || r.status === 137 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A boot's console for a problem report: its telling lines (panic, init's exit, errors), then its last lines. */
function consoleTail(out: string, lines = 15): string {
  const all = out.trimEnd().split('\n');
  const telling = all.filter((l) => /panic|exitcode=|fail|error/i.test(l)).slice(0, 6);
  return `\n--- ${UML_BIN} console: telling lines ---\n${telling.join('\n') || '(none)'}\n--- last ${lines} lines ---\n${all.slice(-lines).join('\n') || '(nothing)'}`;
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
  const fpError = (out: string) => out.match(/ptrace set fp regs failed[^\n]*/)?.[0];
  const first = bootTrue();
  if (ok(first.out)) {
    bootProblem = null;
    return undefined;
  }
  const fp = fpError(first.out);
  if (!fp) return (bootProblem = bootFailure(first, ''));
  const shim = xstateShim();
  const second = shim.path ? bootTrue(shim.path) : undefined;
  if (second && ok(second.out)) {
    preload = shim.path;
    bootProblem = null;
    return undefined;
  }
  // The shim got past the FPU problem, and the boot failed for another reason: that one.
  if (second && !fpError(second.out)) return (bootProblem = bootFailure(second, ' (under the xstate shim)'));
  const amx = /\bamx_tile\b/.test(readFileSync('/proc/cpuinfo', 'utf8')) ? ' (this CPU has AMX tiles)' : '';
  bootProblem = `${UML_BIN} cannot run a program on this machine: ${fp}: user-mode Linux ${umlVersion()} cannot hand this CPU's FPU state to its processes${amx}, and the xstate shim did not help (${shim.error ?? 'it booted no better'})${failOnPurpose()}${consoleTail((second ?? first).out)}`;
  return bootProblem;
}

/** ` (USERFAN_LAB_UML_FAIL=1: …)` when the boot was made to fail on purpose, else ''. */
function failOnPurpose(): string {
  return process.env[UML_FAIL_ENV] === '1' ? ` (${UML_FAIL_ENV}=1: init was /bin/false on purpose)` : '';
}

/** Why a probe boot without the FPU problem failed: out of time, or init's exit. */
function bootFailure(boot: ReturnType<typeof bootTrue>, how: string): string {
  if (boot.timedOut) return `${UML_BIN} did not finish booting within ${UML_BOOT_DEADLINE_MS / 1000} s${how} (status ${boot.status})${consoleTail(boot.out)}`;
  const exit = boot.out.match(/exitcode=0x[0-9a-f]+/)?.[0];
  return `${UML_BIN} cannot run a program on this machine${how}: ${exit ?? `no init exit seen (status ${boot.status})`}${failOnPurpose()}${consoleTail(boot.out)}`;
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
