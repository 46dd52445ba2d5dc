// A real Linux kernel as a lab host: Debian's user-mode Linux (linux.uml, Linux 6.1 with ipip.ko) booted
// inside a namespace of the lab, its network interfaces on veths there.
//
// This machine's kernel has no ipip; a user-mode Linux guest does. The guest's root is the host's / read-only
// (hostfs); a per-run directory on the host, mounted writable in the guest at the same path, carries the script
// to run, its output and exit status, and files the host and the guest use to talk (see GUEST_LIB). Each run
// has its own umid and uml_dir, runs under timeout(1), optionally pinned to one CPU, and is removed afterwards.
//
// Split by seam: uml-kernel.ts finds linux.uml and decides how to launch it (uml-xstate.ts builds the shim
// some CPUs need), uml-scripts.ts holds what runs in the guest and parses what comes out, uml-guest.ts is the
// running guest seen from the host; this file boots it.
//
// Two ways to use it:
//   bootUmlHost(opts)         boot, run one script to the end, power off: { status, output }.
//   startUml(opts) -> guest   a long-running guest whose script ends in `uf_serve`: the host then runs
//                             commands in it with guest.exec(cmd) and stops it with guest.shutdown().
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run, spawnProcess } from './exec.js';
import type { Lab } from './netns.js';
import { pidAlive } from '../control/pid.js';
import { UML_BIN, umlInitPath, umlLauncher, umlMissing } from './uml-kernel.js';
import { GUEST_LIB } from './uml-scripts.js';
import { disposeAtExit, readIf, UmlGuest, type UmlResult } from './uml-guest.js';

export interface UmlOptions {
  /** Host network namespace linux.uml runs in (its vecN interfaces are veths there). */
  ns: string;
  /** Host-side interfaces in `ns`, in order: the guest's vec0, vec1, … */
  veths?: string[];
  /** Bash run in the guest once it is up (GUEST_LIB's functions are defined). End it with `uf_serve` for exec(). */
  script: string;
  /** Variables exported to the script (values are shell-quoted). */
  env?: Record<string, string | number>;
  /** Modules loaded before the script (default tun, ipip, bridge, veth). */
  modules?: string[];
  /** Bound on the whole life of the guest (timeout(1) around linux.uml). Default 120 000 ms. */
  timeoutMs?: number;
  /** Parent of the per-run directory (default the OS temp dir). */
  workdir?: string;
  /** Label used in the umid (default `um` + random). */
  name?: string;
  /** Pin linux.uml to this CPU (taskset -c). */
  cpu?: number;
  /** Guest memory in MiB (default 512). */
  memMb?: number;
  /** vector driver GRO/TSO with virtio-net headers on the raw socket (default true). */
  gro?: boolean;
  /**
   * Turn off TX checksum offload on the host-side veths first (`ethtool -K VETH tx off`), so that what the guest
   * sends leaves like on a wire: checksums complete, no GSO super-packets. Default false.
   */
  txChecksumOff?: boolean;
  /** Spawn through this lab (its destroy() then also stops the guest). */
  lab?: Lab;
}

/** struct sock_filter[]: ld pkttype; jeq PACKET_OUTGOING -> drop; else accept 256 KiB. */
const OUTGOING_DROP_BPF = (() => {
  const insns: [number, number, number, number][] = [
    [0x20, 0, 0, 0xfffff004], // ld [SKF_AD_OFF + SKF_AD_PKTTYPE]
    [0x15, 0, 1, 4], // jeq #PACKET_OUTGOING, jt 0, jf 1
    [0x06, 0, 0, 0], // ret #0
    [0x06, 0, 0, 0x40000], // ret #262144
  ];
  const b = Buffer.alloc(insns.length * 8);
  insns.forEach(([code, jt, jf, k], i) => {
    b.writeUInt16LE(code, i * 8);
    b.writeUInt8(jt, i * 8 + 2);
    b.writeUInt8(jf, i * 8 + 3);
    b.writeUInt32LE(k, i * 8 + 4);
  });
  return b;
})();

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Remove run directories of guests that died without cleaning up (a SIGKILLed run): directories in `parent` laid
 * out by startUml (init.sh, rx.bpf, script.sh) whose linux.uml pid file names a dead process, or that have no pid
 * file and are over 10 minutes old. Returns what was removed.
 */
export function cleanupStaleUmlDirs(parent = tmpdir()): string[] {
  const removed: string[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(parent);
  } catch {
    return removed;
  }
  for (const n of names) {
    if (!/^[A-Za-z0-9_]+-[A-Za-z0-9]{6}$/.test(n)) continue;
    const d = join(parent, n);
    if (!['init.sh', 'rx.bpf', 'script.sh'].every((f) => existsSync(join(d, f)))) continue;
    let alive = false;
    let pidSeen = false;
    try {
      for (const u of readdirSync(join(d, 'uml'))) {
        const pid = Number(readIf(join(d, 'uml', u, 'pid'))?.trim());
        if (Number.isInteger(pid) && pid > 0) {
          pidSeen = true;
          if (pidAlive(pid)) alive = true;
        }
      }
    } catch {
      /* no uml dir yet */
    }
    let old = false;
    try {
      old = Date.now() - statSync(d).mtimeMs > 10 * 60_000;
    } catch {
      continue;
    }
    if (alive || (!pidSeen && !old)) continue;
    rmSync(d, { recursive: true, force: true });
    removed.push(d);
  }
  return removed;
}

/** Boot a guest (returns once linux.uml is started; use guest.ready() / waitFile() / wait()). */
export async function startUml(opts: UmlOptions): Promise<UmlGuest> {
  const missing = umlMissing();
  if (missing) throw new Error(missing);
  cleanupStaleUmlDirs(opts.workdir ?? tmpdir());
  const label = (opts.name ?? 'um' + randomBytes(3).toString('hex')).replace(/[^A-Za-z0-9_-]/g, '');
  const dir = mkdtempSync(join(opts.workdir ?? tmpdir(), `${label}-`));
  const umid = `${label}-${randomBytes(3).toString('hex')}`;
  try {
    const env = Object.entries(opts.env ?? {})
      .map(([k, v]) => {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`bad variable name ${k}`);
        return `export ${k}=${shQuote(String(v))}\n`;
      })
      .join('');
    const veths = opts.veths ?? [];
    const gro = opts.gro ?? true;
    // With virtio-net headers (gro=1) the driver can take TSO super-packets, but opening the device turns TSO
    // off: bring it up here and turn TSO on (scripts may set the link up again; that keeps it).
    const tso = gro ? veths.map((_, i) => `ip link set dev vec${i} up && ethtool -K vec${i} tso on >/dev/null 2>&1\n`).join('') : '';
    writeFileSync(join(dir, 'script.sh'), `${GUEST_LIB}\n${env}${tso}uf_mark booted\n${opts.script}\n`);
    // The vector driver's raw transport reads with one packet socket and writes with another, so the reading
    // socket also sees every frame the guest sent: a classic BPF filter drops PACKET_OUTGOING frames.
    writeFileSync(join(dir, 'rx.bpf'), OUTGOING_DROP_BPF);
    for (const v of veths) {
      if (!/^[A-Za-z0-9_.-]{1,15}$/.test(v)) throw new Error(`bad interface name ${v}`);
      if (opts.txChecksumOff) await run(['ethtool', '-K', v, 'tx', 'off'], { ns: opts.ns });
    }
    // A private, executable copy of the init script: a checkout or package may have lost the exec bit.
    const initCopy = join(dir, 'init.sh');
    copyFileSync(umlInitPath(), initCopy);
    chmodSync(initCopy, 0o755);
    const timeoutS = Math.ceil((opts.timeoutMs ?? 120_000) / 1000);
    const modules = opts.modules ?? ['tun', 'ipip', 'bridge', 'veth'];
    const argv = [
      // timeout(1) makes itself a process-group leader and signals the whole group: every host process of the guest
      'timeout', '-k', '5', String(timeoutS),
      ...(opts.cpu !== undefined ? ['taskset', '-c', String(opts.cpu)] : []),
      ...umlLauncher(),
      UML_BIN,
      `mem=${opts.memMb ?? 512}M`,
      'rootfstype=hostfs', 'rootflags=/', 'ro', 'loglevel=2',
      `uml_dir=${join(dir, 'uml')}`, `umid=${umid}`,
      `init=${initCopy}`,
      `UF_DIR=${dir}`, `UF_MODULES=${modules.join(',')}`, `UF_HOSTNAME=${label}`,
      ...veths.map((v, i) => `vec${i}:transport=raw,ifname=${v},depth=128${gro ? ',gro=1' : ''},bpffile=${join(dir, 'rx.bpf')}`),
      'con=null', 'con0=null,fd:1',
    ];
    const proc = opts.lab ? opts.lab.spawn(opts.ns, argv, { keepLines: 400 }) : spawnProcess(argv, { ns: opts.ns, keepLines: 400 });
    const guest = new UmlGuest(umid, dir, proc, opts.ns);
    disposeAtExit(guest);
    return guest;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Boot a guest, run `script` to its end, power off, clean up: the script's status and output. */
export async function bootUmlHost(opts: UmlOptions): Promise<UmlResult> {
  const guest = await startUml(opts);
  try {
    return await guest.wait((opts.timeoutMs ?? 120_000) + 10_000);
  } finally {
    await guest.dispose();
  }
}
