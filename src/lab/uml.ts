// A real Linux kernel as a lab host: Debian's user-mode Linux (linux.uml, Linux 6.1 with ipip.ko) booted
// inside a namespace of the lab, its network interfaces on veths there.
//
// This machine's kernel has no ipip; a user-mode Linux guest does. The guest's root is the host's / read-only
// (hostfs); a per-run directory on the host, mounted writable in the guest at the same path, carries the script
// to run, its output and exit status, and files the host and the guest use to talk (see GUEST_LIB). Each run
// has its own umid and uml_dir, runs under timeout(1), optionally pinned to one CPU, and is removed afterwards.
//
// Two ways to use it:
//   bootUmlHost(opts)         boot, run one script to the end, power off: { status, output }.
//   startUml(opts) -> guest   a long-running guest whose script ends in `uf_serve`: the host then runs
//                             commands in it with guest.exec(cmd) and stops it with guest.shutdown().
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { run, spawnProcess, type ProcessHandle } from './exec.js';
import type { Lab } from './netns.js';
import { pidAlive } from '../control/pid.js';
import { fanBridgeName, fanSlice, intToIp, ipToInt } from './topology.js';

export const UML_BIN = '/usr/bin/linux.uml';
export const UML_MODULES_DIR = '/usr/lib/uml/modules';
export const UML_INSTALL_HINT = 'apt-get install -y user-mode-linux kmod';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The package root (the directory holding userfan's package.json), from src/lab or dist/src/lab alike. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if (JSON.parse(readFileSync(pj, 'utf8')).name === 'userfan') return dir;
      } catch {
        /* keep looking */
      }
    }
    dir = dirname(dir);
  }
  throw new Error('cannot find the userfan package root above ' + fileURLToPath(import.meta.url));
}

/** The guest's init script (not compiled by tsc: it lives in src/lab/ and is used from there). */
export function umlInitPath(): string {
  return join(packageRoot(), 'src', 'lab', 'uml-init.sh');
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
 * The xstate shim (src/lab/uml-xstate.c, see there), compiled once into build/ next to the addon: what
 * lets Debian's user-mode Linux 6.1 run programs on CPUs with a large XSAVE area. Its path, or why not.
 */
function xstateShim(): { path?: string; error?: string } {
  const src = join(packageRoot(), 'src', 'lab', 'uml-xstate.c');
  const out = join(packageRoot(), 'build', 'uml-xstate.so');
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

/**
 * Shell functions every guest script gets (prepended to it). All talk to the host goes through files in
 * $UF_DIR, written to a temporary name, fsynced (hostfs caches in the guest), then renamed.
 *   uf_mark NAME [TEXT]   tell the host something: $UF_DIR/NAME with TEXT
 *   uf_wait NAME SECONDS  wait for the host to create $UF_DIR/NAME (status 1 after SECONDS)
 *   uf_serve [SECONDS]    run the host's commands (cmd-N.sh, in order) until the host writes `stop`;
 *                         each one's output goes to res-N.out and its status to res-N.status.
 */
export const GUEST_LIB = String.raw`
uf_mark() {
  local f="$UF_DIR/$1"; shift
  printf '%s\n' "$*" > "$f.tmp" && sync "$f.tmp" && mv "$f.tmp" "$f"
}
uf_wait() {
  local end=$((SECONDS + $2))
  while [ ! -e "$UF_DIR/$1" ]; do
    [ "$SECONDS" -ge "$end" ] && return 1
    sleep 0.05
  done
}
uf_serve() {
  local n=0 end=$((SECONDS + ${"${1:-600}"})) t rc
  uf_mark serving
  while [ "$SECONDS" -lt "$end" ]; do
    if [ -e "$UF_DIR/cmd-$n.sh" ]; then
      t=$(sed -n '1s/^#timeout=//p' "$UF_DIR/cmd-$n.sh")
      timeout -k 2 "${"${t:-60}"}" bash "$UF_DIR/cmd-$n.sh" > "$UF_DIR/res-$n.out" 2>&1 < /dev/null
      rc=$?
      sync "$UF_DIR/res-$n.out"
      uf_mark "res-$n.status" "$rc"
      n=$((n + 1))
    elif [ -e "$UF_DIR/stop" ]; then
      return 0
    else
      sleep 0.02
    fi
  done
  echo "uf_serve: the host sent no stop within ${"${1:-600}"} s" >&2
  return 1
}
`;

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

export interface UmlResult {
  /** The script's exit status (null: it never finished). */
  status: number | null;
  /** The script's stdout + stderr. */
  output: string;
  /** linux.uml's own console (boot messages, kernel warnings). */
  console: string;
  /** linux.uml's exit code (0 after a clean power-off; 124/137 after timeout). */
  exitCode: number | null;
}

export interface ExecResult {
  code: number;
  output: string;
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

function writeAtomic(path: string, data: string): void {
  writeFileSync(path + '.tmp', data);
  renameSync(path + '.tmp', path);
}

function readIf(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** A running user-mode Linux guest. */
export class UmlGuest {
  private cmdSeq = 0;
  private disposed = false;
  private execChain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly umid: string,
    /** The per-run directory on the host (the same path inside the guest). */
    readonly dir: string,
    readonly proc: ProcessHandle,
    readonly ns: string,
  ) {}

  get running(): boolean {
    return this.proc.running;
  }

  /** Content of a file the guest wrote in its directory (undefined if absent). */
  readFile(name: string): string | undefined {
    return readIf(join(this.dir, name));
  }

  /** Create a file in the shared directory (atomically) for the guest to see. */
  writeFile(name: string, data: string): void {
    writeAtomic(join(this.dir, name), data);
  }

  /** linux.uml's console output so far. */
  console(): string {
    return this.proc.lines.map((l) => l.line).join('\n');
  }

  private failure(what: string): Error {
    const out = this.readFile('output') ?? '';
    return new Error(
      `uml ${this.umid}: ${what}\n--- guest script output (tail) ---\n${out.slice(-3000)}\n--- console (tail) ---\n${this.proc.tail(15)}`,
    );
  }

  /** Wait (polling, bounded) for the guest to create `name`; returns its content. Throws if the guest dies first. */
  async waitFile(name: string, timeoutMs: number): Promise<string> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const s = this.readFile(name);
      if (s !== undefined) return s;
      if (!this.proc.running) {
        const again = this.readFile(name);
        if (again !== undefined) return again;
        throw this.failure(`guest exited (code ${this.proc.exitCode}) before writing ${name}`);
      }
      if (Date.now() >= until) throw this.failure(`no ${name} from the guest within ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  /** Wait for the guest script to reach `uf_serve`. */
  ready(timeoutMs = 60_000): Promise<string> {
    return this.waitFile('serving', timeoutMs);
  }

  /**
   * Run a bash snippet in the guest (its script must be in `uf_serve`). Commands run one at a time, in order;
   * a command is killed in the guest after timeoutMs, and the host gives up shortly after that.
   */
  exec(cmd: string, opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    const p = this.execChain.then(() => this.execNow(cmd, opts.timeoutMs ?? 30_000));
    this.execChain = p.catch(() => undefined);
    return p;
  }

  /** exec(), throwing unless the command exits 0; returns its output. */
  async execOk(cmd: string, opts: { timeoutMs?: number } = {}): Promise<string> {
    const r = await this.exec(cmd, opts);
    if (r.code !== 0) throw new Error(`uml ${this.umid}: command failed (status ${r.code}): ${cmd}\n${r.output.slice(-3000)}`);
    return r.output;
  }

  private async execNow(cmd: string, timeoutMs: number): Promise<ExecResult> {
    const n = this.cmdSeq++;
    const secs = Math.max(1, Math.ceil(timeoutMs / 1000));
    this.writeFile(`cmd-${n}.sh`, `#timeout=${secs}\n${cmd}\n`);
    const status = await this.waitFile(`res-${n}.status`, timeoutMs + 5000);
    return { code: Number(status.trim()), output: this.readFile(`res-${n}.out`) ?? '' };
  }

  /** Wait for the guest to power off by itself (bounded; then it is killed). */
  async wait(timeoutMs: number): Promise<UmlResult> {
    await this.proc.wait(timeoutMs);
    if (this.proc.running) this.kill();
    const st = this.readFile('status');
    return {
      status: st === undefined ? null : Number(st.trim()),
      output: this.readFile('output') ?? '',
      console: this.console(),
      exitCode: this.proc.exitCode,
    };
  }

  /** Ask a serving guest to finish (its script returns from uf_serve and the guest powers off); bounded. */
  async shutdown(timeoutMs = 20_000): Promise<UmlResult> {
    if (this.proc.running) this.writeFile('stop', '');
    return this.wait(timeoutMs);
  }

  /** SIGKILL linux.uml and every process of its group (timeout(1) leads the group). */
  kill(): void {
    const pid = this.proc.pid;
    if (pid !== undefined && this.proc.running) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        this.proc.kill('SIGKILL');
      }
    }
  }

  /** Stop the guest if still running and remove its directory. Idempotent; never throws. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    if (this.proc.running) {
      this.kill();
      await this.proc.wait(5000).catch(() => undefined);
    }
    liveGuests.delete(this);
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }

  disposeSync(): void {
    this.disposed = true;
    this.kill();
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
}

// Guests still alive at process exit are killed and their directories removed.
const liveGuests = new Set<UmlGuest>();
let exitHook = false;
function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const g of liveGuests) g.disposeSync();
  });
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
    liveGuests.add(guest);
    installExitHook();
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

// ---- kernel ipip configured the way the Fan configures a kernel without fan-map ----

/** The Fan slice of an underlay host: 250.0.0.0/8 over 198.18.0.0/16, 198.18.0.27 -> 250.0.27.0/24. */
export function fanSliceOf(overlay: string, underlayHost: string, underlayLen: number): { network: string; prefixLen: number; gateway: string; bridge: string } {
  const [oNet, oLenS] = overlay.split('/');
  const { network, prefixLen } = fanSlice(oNet, Number(oLenS), underlayHost, underlayLen);
  if (prefixLen > 30) throw new Error(`fan slice /${prefixLen} too small`);
  return { network, prefixLen, gateway: intToIp(ipToInt(network) + 1), bridge: fanBridgeName(network, prefixLen) };
}

export interface KernelFanHost {
  /** The guest's underlay interface (default vec0). */
  dev?: string;
  /** This host's underlay address and prefix length: 198.18.0.27, 16. */
  underlay: string;
  underlayLen: number;
  /** The fan's overlay (default 250.0.0.0/8). */
  overlay?: string;
  /** Underlay addresses of the other hosts: each one's slice is routed via tunl0 to it. */
  remotes: string[];
  /** Container addresses in this host's slice (default [.3]); each in its own namespace c0, c1, … */
  containers?: string[];
  /** net.ipv4.conf.{all,tunl0}.rp_filter (default 1, strict). */
  rpFilter?: 0 | 1 | 2;
  /** Underlay MTU (default 1500); tunnel, bridge and containers get 20 less. */
  mtu?: number;
}

/**
 * A guest script that sets up kernel ipip as the Fan would on a kernel without fan-map: tunl0 up, a route per
 * remote slice (`ip route add 250.0.28.0/24 via 198.18.0.28 dev tunl0 onlink`), this host's slice on the bridge
 * fan-250-0-27 (250.0.27.1/24, MTU 1480) with container namespaces behind it, ip_forward=1.
 */
export function kernelFanScript(h: KernelFanHost): string {
  const dev = h.dev ?? 'vec0';
  const overlay = h.overlay ?? '250.0.0.0/8';
  const mtu = h.mtu ?? 1500;
  const tmtu = mtu - 20;
  const own = fanSliceOf(overlay, h.underlay, h.underlayLen);
  const containers = h.containers ?? [intToIp(ipToInt(own.network) + 3)];
  const rp = h.rpFilter ?? 1;
  const lines = [
    'set -e',
    `sysctl -qw net.ipv4.conf.all.rp_filter=${rp} net.ipv4.conf.default.rp_filter=${rp} net.ipv4.conf.tunl0.rp_filter=${rp}`,
    `ip link set dev ${dev} mtu ${mtu} up`,
    `ip addr add ${h.underlay}/${h.underlayLen} dev ${dev}`,
    `ip link set dev tunl0 mtu ${tmtu} up`,
    ...h.remotes.map((r) => {
      const s = fanSliceOf(overlay, r, h.underlayLen);
      return `ip route add ${s.network}/${s.prefixLen} via ${r} dev tunl0 onlink`;
    }),
    `ip link add name ${own.bridge} type bridge`,
    `ip link set dev ${own.bridge} mtu ${tmtu} up`,
    `ip addr add ${own.gateway}/${own.prefixLen} dev ${own.bridge}`,
    'sysctl -qw net.ipv4.ip_forward=1',
  ];
  containers.forEach((addr, i) => {
    const c = `c${i}`;
    lines.push(
      `ip netns add ${c}`,
      `ip link add name ${c}h type veth peer name eth0 netns ${c}`,
      `ip link set dev ${c}h mtu ${tmtu} master ${own.bridge} up`,
      `ip -n ${c} link set dev lo up`,
      `ip -n ${c} link set dev eth0 mtu ${tmtu} up`,
      `ip -n ${c} addr add ${addr}/${own.prefixLen} dev eth0`,
      `ip -n ${c} route add default via ${own.gateway} dev eth0`,
    );
  });
  lines.push('set +e');
  return lines.join('\n') + '\n';
}

/** Parse `ip -s -j link show DEV` output (or `ip -s link show DEV` text) into rx/tx packet and byte counters. */
export function parseLinkStats(out: string): { rxPackets: number; rxBytes: number; txPackets: number; txBytes: number; rxErrors: number; rxDropped: number; txErrors: number } {
  const trimmed = out.trim();
  if (trimmed.startsWith('[')) {
    const [l] = JSON.parse(trimmed) as { stats64: { rx: Record<string, number>; tx: Record<string, number> } }[];
    return {
      rxPackets: l.stats64.rx.packets,
      rxBytes: l.stats64.rx.bytes,
      rxErrors: l.stats64.rx.errors,
      rxDropped: l.stats64.rx.dropped,
      txPackets: l.stats64.tx.packets,
      txBytes: l.stats64.tx.bytes,
      txErrors: l.stats64.tx.errors,
    };
  }
  const rx = /RX:[^\n]*\n\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(out);
  const tx = /TX:[^\n]*\n\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(out);
  if (!rx || !tx) throw new Error(`cannot parse link statistics:\n${out}`);
  return {
    rxBytes: Number(rx[1]),
    rxPackets: Number(rx[2]),
    rxErrors: Number(rx[3]),
    rxDropped: Number(rx[4]),
    txBytes: Number(tx[1]),
    txPackets: Number(tx[2]),
    txErrors: Number(tx[3]),
  };
}
