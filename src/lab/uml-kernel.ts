// Finding Debian's user-mode Linux (linux.uml, Linux 6.1 with ipip.ko) and whether it can run programs on
// this machine: what the lab needs before it boots a guest, and what goes before linux.uml on its command
// line. The boot probe runs once per process; its verdict is kept.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { PACKAGE_ROOT } from './paths.js';
import { xstateShim } from './uml-xstate.js';

export const UML_BIN = '/usr/bin/linux.uml';
export const UML_MODULES_DIR = '/usr/lib/uml/modules';
export const UML_INSTALL_HINT = 'apt-get install -y user-mode-linux kmod';

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

/** Boots the guest kernel with /bin/true as init (optionally under a preload): its console output. */
function bootTrue(withPreload?: string): { out: string; status: number | null } {
  const dir = mkdtempSync(join(tmpdir(), 'umprobe-'));
  try {
    const r = spawnSync(
      'timeout',
      ['-k', '5', '60', ...(withPreload ? ['env', `LD_PRELOAD=${withPreload}`] : []), UML_BIN, 'mem=64M', 'rootfstype=hostfs', 'rootflags=/', 'ro', `uml_dir=${dir}`, `umid=probe-${process.pid}`, 'init=/bin/true', 'con=null', 'con0=null,fd:1'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 16 << 20 },
    );
    return { out: `${r.stdout ?? ''}${r.stderr ?? ''}`, status: r.status };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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
    bootProblem = `${UML_BIN} cannot run a program on this machine: ${fp}: user-mode Linux ${umlVersion()} cannot hand this CPU's FPU state to its processes${amx}, and the xstate shim did not help (${shim.error ?? 'it booted no better'})`;
    return bootProblem;
  }
  const exit = first.out.match(/exitcode=0x[0-9a-f]+/)?.[0];
  bootProblem = `${UML_BIN} cannot run a program on this machine: ${exit ?? `no init exit seen (status ${first.status})`}`;
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
