// Network-namespace lab: uniquely named namespaces and veths that are always torn down.
//
// A Lab owns a short random prefix (`uf` + 4 base36 chars, e.g. `uf3k9z`). Every namespace it
// creates is named `<prefix>-<suffix>` and every interface name it hands out starts with the
// prefix and fits in 15 characters. destroy() kills what the lab spawned (and anything else still
// running inside its namespaces) and deletes the namespaces, which removes every device in them.
// Live labs are also destroyed on process exit, SIGINT, SIGTERM and SIGHUP.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { run, spawnProcess, type ProcessHandle, type RunOptions, type RunResult, type SpawnOptions } from './exec.js';
import { pidAlive, procStart } from '../control/pid.js';

export { run, spawnProcess, CommandError, ProcessHandle, type RunOptions, type RunResult, type SpawnOptions } from './exec.js';

/** Where live labs record their owner pid, so leftovers of dead runs can be found. */
export const LAB_STATE_DIR = '/run/userfan-lab';

const IFNAMSIZ = 15;

/** `uf` + 4 random base36 characters. */
export function randomPrefix(): string {
  const n = randomBytes(4).readUInt32BE(0) % 36 ** 4;
  return 'uf' + n.toString(36).padStart(4, '0');
}

/** Every namespace name known to `ip netns`. */
export async function listNamespaces(): Promise<string[]> {
  const r = await run(['ip', 'netns', 'list'], { allowFail: true });
  return parseNetnsList(r.stdout);
}

function parseNetnsList(out: string): string[] {
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n): n is string => !!n);
}

function killNsPidsSync(ns: string): void {
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 });
  for (const p of (r.stdout ?? '').split(/\s+/).filter(Boolean)) {
    const pid = Number(p);
    if (Number.isInteger(pid) && pid > 1 && pid !== process.pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

async function nsPids(ns: string): Promise<number[]> {
  const r = await run(['ip', 'netns', 'pids', ns], { allowFail: true, timeoutMs: 5000 });
  return r.stdout
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((p) => Number.isInteger(p) && p > 1 && p !== process.pid);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Kill every process in `ns` (SIGTERM, then SIGKILL after graceMs) and delete the namespace. */
async function removeNamespace(ns: string, graceMs: number): Promise<void> {
  let pids = await nsPids(ns);
  if (pids.length) {
    for (const p of pids) {
      try {
        process.kill(p, 'SIGTERM');
      } catch {
        /* gone */
      }
    }
    const until = Date.now() + graceMs;
    while (Date.now() < until && (pids = pids.filter(pidAlive)).length) await sleep(50);
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  await run(['ip', 'netns', 'del', ns], { allowFail: true, timeoutMs: 10_000 });
}

/** Root-namespace links whose name starts with `prefix` (none should exist; we remove them if they do). */
async function rootLinksWithPrefix(prefix: string): Promise<string[]> {
  const r = await run(['ip', '-o', 'link', 'show'], { allowFail: true });
  const names: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^\d+:\s+([^:@\s]+)/.exec(line);
    if (m && m[1].startsWith(prefix)) names.push(m[1]);
  }
  return names;
}

/**
 * Remove leftovers of a lab with exactly this prefix: processes in its namespaces, the namespaces
 * (`<prefix>-*`), root-namespace links named `<prefix>*`, its state file. Returns what was removed.
 * Pass a full lab prefix (e.g. `uf3k9z`), never a shared stem: other runs may be live.
 */
export async function cleanupStale(prefix: string): Promise<string[]> {
  if (!/^[a-z0-9]{3,10}$/.test(prefix)) throw new Error(`cleanupStale: refusing prefix ${JSON.stringify(prefix)}`);
  const removed: string[] = [];
  for (const ns of await listNamespaces()) {
    if (ns.startsWith(prefix + '-')) {
      await removeNamespace(ns, 1000);
      removed.push(ns);
    }
  }
  for (const link of await rootLinksWithPrefix(prefix)) {
    await run(['ip', 'link', 'del', link], { allowFail: true });
    removed.push(link);
  }
  rmSync(`${LAB_STATE_DIR}/${prefix}`, { force: true });
  return removed;
}

/**
 * Clean up labs whose owning process is gone (their state file names a dead pid). Safe while other
 * labs are running. Returns the prefixes cleaned.
 */
export async function cleanupOrphans(): Promise<string[]> {
  let files: string[] = [];
  try {
    files = readdirSync(LAB_STATE_DIR);
  } catch {
    return [];
  }
  const cleaned: string[] = [];
  for (const prefix of files) {
    let owner: { pid: number; start: string } | undefined;
    try {
      owner = JSON.parse(readFileSync(`${LAB_STATE_DIR}/${prefix}`, 'utf8'));
    } catch {
      /* unreadable: treat as orphan */
    }
    if (owner && pidAlive(owner.pid) && procStart(owner.pid) === owner.start) continue;
    if (!/^[a-z0-9]{3,10}$/.test(prefix)) continue;
    await cleanupStale(prefix);
    cleaned.push(prefix);
  }
  return cleaned;
}


// ---- process-wide registry and exit/signal hooks ----

const liveLabs = new Set<Lab>();
let hooksInstalled = false;
let signalling = false;

function onExit(): void {
  for (const lab of [...liveLabs]) lab.destroySync();
}

function onSignal(sig: NodeJS.Signals): void {
  const code = 128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as Record<string, number>)[sig]!;
  if (signalling) {
    // second signal: no more waiting
    onExit();
    process.exit(code);
  }
  signalling = true;
  process.stderr.write(`\nlab: ${sig}, tearing down ${liveLabs.size} lab(s)\n`);
  const all = Promise.all([...liveLabs].map((l) => l.destroy().catch(() => l.destroySync())));
  const bound = sleep(10_000).then(() => onExit());
  void Promise.race([all, bound]).finally(() => process.exit(code));
}

function installHooks(signals: boolean): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', onExit);
  if (signals) for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);
}

function uninstallHooksIfIdle(): void {
  if (!hooksInstalled || liveLabs.size) return;
  hooksInstalled = false;
  process.off('exit', onExit);
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(s, onSignal);
}

export interface LabOptions {
  /** Use this prefix instead of a random one (3–10 of [a-z0-9]); leftovers with it are removed first. */
  prefix?: string;
  /** Install SIGINT/SIGTERM/SIGHUP handlers that destroy live labs and exit (default true). */
  signalHooks?: boolean;
}

export interface NamespaceOptions {
  /** Turn IPv6 off in the namespace (default true: keeps captures free of RS/DAD noise). */
  disableIpv6?: boolean;
  /** net.ipv4.ip_forward (default false). */
  forwarding?: boolean;
}

export interface VethEnd {
  ns: string;
  name: string;
  mtu?: number;
}

export class Lab {
  readonly prefix: string;
  private readonly namespaces_: string[] = [];
  private readonly procs = new Set<ProcessHandle>();
  private destroyed = false;
  private destroying: Promise<void> | undefined;
  private ifCounter = 0;

  private constructor(prefix: string) {
    this.prefix = prefix;
  }

  /** Create a lab with a fresh unique prefix (or opts.prefix, after cleaning leftovers of it). */
  static async create(opts: LabOptions = {}): Promise<Lab> {
    let prefix = opts.prefix;
    if (prefix !== undefined) {
      if (!/^[a-z0-9]{3,10}$/.test(prefix)) throw new Error(`bad lab prefix ${JSON.stringify(prefix)}`);
      await cleanupStale(prefix);
    } else {
      const existing = await listNamespaces();
      for (let i = 0; ; i++) {
        prefix = randomPrefix();
        const p = prefix;
        if (!existing.some((n) => n.startsWith(p)) && !(await rootLinksWithPrefix(p)).length) break;
        if (i > 20) throw new Error('cannot find an unused lab prefix');
      }
    }
    const lab = new Lab(prefix);
    try {
      mkdirSync(LAB_STATE_DIR, { recursive: true });
      writeFileSync(
        `${LAB_STATE_DIR}/${prefix}`,
        JSON.stringify({ pid: process.pid, start: procStart(process.pid), argv: process.argv.slice(1, 3) }) + '\n',
      );
    } catch {
      /* state file is a convenience for cleanupOrphans */
    }
    liveLabs.add(lab);
    installHooks(opts.signalHooks ?? true);
    return lab;
  }

  /** Namespaces created so far, in creation order. */
  get namespaces(): readonly string[] {
    return this.namespaces_;
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  /** `<prefix>-<suffix>`. */
  nsName(suffix: string): string {
    return `${this.prefix}-${suffix}`;
  }

  /** `<prefix><suffix>`, checked against the 15-character interface name limit. */
  ifName(suffix: string): string {
    const name = this.prefix + suffix;
    if (name.length > IFNAMSIZ) throw new Error(`interface name too long: ${name}`);
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`bad interface name: ${name}`);
    return name;
  }

  /** A fresh interface name `<prefix><letter><n>` (unique within this lab). */
  nextIfName(letter: string): string {
    return this.ifName(`${letter}${this.ifCounter++}`);
  }

  private check(): void {
    if (this.destroyed) throw new Error(`lab ${this.prefix} already destroyed`);
  }

  /** Create namespace `<prefix>-<suffix>` with lo up. Returns its name. */
  async addNamespace(suffix: string, opts: NamespaceOptions = {}): Promise<string> {
    this.check();
    if (!/^[A-Za-z0-9_.-]+$/.test(suffix)) throw new Error(`bad namespace suffix ${suffix}`);
    const ns = this.nsName(suffix);
    if (this.namespaces_.includes(ns)) throw new Error(`namespace ${ns} already exists in this lab`);
    await run(['ip', 'netns', 'add', ns]);
    this.namespaces_.push(ns);
    await run(['ip', 'link', 'set', 'lo', 'up'], { ns });
    if (opts.disableIpv6 ?? true) {
      await this.sysctl(ns, 'net.ipv6.conf.all.disable_ipv6', '1');
      await this.sysctl(ns, 'net.ipv6.conf.default.disable_ipv6', '1');
    }
    if (opts.forwarding) await this.sysctl(ns, 'net.ipv4.ip_forward', '1');
    return ns;
  }

  /** Write a sysctl inside a namespace (through /proc/sys, no shell). */
  async sysctl(ns: string, key: string, value: string): Promise<void> {
    await run(['sysctl', '-q', '-w', `${key}=${value}`], { ns });
  }

  /**
   * Create a veth pair with one end in each namespace (created there directly, never in the root
   * namespace), set MTUs and bring both ends up.
   */
  async addVeth(a: VethEnd, b: VethEnd): Promise<void> {
    this.check();
    for (const e of [a, b]) {
      if (e.name.length > IFNAMSIZ) throw new Error(`interface name too long: ${e.name}`);
      if (!this.namespaces_.includes(e.ns)) throw new Error(`namespace ${e.ns} is not part of lab ${this.prefix}`);
    }
    await run(['ip', 'link', 'add', 'name', a.name, 'netns', a.ns, 'type', 'veth', 'peer', 'name', b.name, 'netns', b.ns]);
    for (const e of [a, b]) {
      if (e.mtu) await run(['ip', 'link', 'set', 'dev', e.name, 'mtu', String(e.mtu)], { ns: e.ns });
      await run(['ip', 'link', 'set', 'dev', e.name, 'up'], { ns: e.ns });
    }
  }

  /** Run a command to completion inside `ns` (undefined: root namespace). Throws on non-zero exit. */
  exec(ns: string | undefined, argv: readonly string[], opts: Omit<RunOptions, 'ns'> = {}): Promise<RunResult> {
    this.check();
    return run(argv, { ...opts, ns });
  }

  /** Start a long-running process inside `ns`; destroy() stops it. */
  spawn(ns: string | undefined, argv: readonly string[], opts: Omit<SpawnOptions, 'ns'> = {}): ProcessHandle {
    this.check();
    const h = spawnProcess(argv, { ...opts, ns });
    this.procs.add(h);
    void h.exited.then(() => this.procs.delete(h));
    return h;
  }

  /** Processes spawned through this lab that are still running. */
  get processes(): ProcessHandle[] {
    return [...this.procs].filter((p) => p.running);
  }

  /**
   * Stop everything: spawned processes (SIGTERM, SIGKILL after graceMs), any other process left in the
   * lab's namespaces, then the namespaces themselves (and with them every device in them).
   * Idempotent; never throws.
   */
  destroy(graceMs = 3000): Promise<void> {
    if (this.destroying) return this.destroying;
    this.destroyed = true;
    this.destroying = (async () => {
      try {
        await Promise.all([...this.procs].map((p) => p.stop(graceMs).catch(() => undefined)));
        // reverse order: containers before hosts before the underlay
        for (const ns of [...this.namespaces_].reverse()) {
          await removeNamespace(ns, Math.min(graceMs, 1000)).catch(() => undefined);
        }
        // anything we did not record (a step that failed halfway)
        await cleanupStale(this.prefix).catch(() => undefined);
      } finally {
        liveLabs.delete(this);
        uninstallHooksIfIdle();
      }
    })();
    return this.destroying;
  }

  /** Synchronous, no-grace teardown for process exit. */
  destroySync(): void {
    this.destroyed = true;
    for (const p of this.procs) p.kill('SIGKILL');
    const out = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 5000 }).stdout ?? '';
    const all = new Set([...this.namespaces_, ...parseNetnsList(out).filter((n) => n.startsWith(this.prefix + '-'))]);
    for (const ns of [...all].reverse()) {
      killNsPidsSync(ns);
      spawnSync('ip', ['netns', 'del', ns], { timeout: 5000 });
    }
    rmSync(`${LAB_STATE_DIR}/${this.prefix}`, { force: true });
    liveLabs.delete(this);
  }
}

/** Create a lab, run `fn`, and always destroy the lab afterwards. */
export async function withLab<T>(fn: (lab: Lab) => Promise<T>, opts: LabOptions = {}): Promise<T> {
  const lab = await Lab.create(opts);
  try {
    return await fn(lab);
  } finally {
    await lab.destroy();
  }
}
