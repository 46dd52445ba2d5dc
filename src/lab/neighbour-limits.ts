/**
 * Room in the kernel's neighbour (ARP) table for a big lab, and the old limits back afterwards.
 *
 * Linux has one IPv4 neighbour table (arp_tbl) for all network namespaces together: its limits,
 * net.ipv4.neigh.default.gc_thresh1/2/3 (128, 512 and 1024 by default), exist only in the initial
 * namespace and cap the entries of every namespace at once. A lab of N hosts that all talk to each other
 * needs N·(N−1) + 2·N entries: each host one ARP entry per peer on its underlay interface, and one NOARP
 * entry each on its TUN device (point-to-point: one entry serves every destination) and its fan bridge (measured:
 * 4,160 at 64 hosts, 16,517 at 128). Past gc_thresh3 the kernel cannot create a neighbour ("neighbour
 * table overflow" in dmesg, table_fulls in /proc/net/stat/arp_cache) and drops the packet that needed it:
 * a ping is told (sendmsg: No buffer space available), a raw socket without IP_RECVERR is not
 * (raw_send_hdrinc swallows ENOBUFS). 64 hosts lost a fifth of their pings at the default 1,024.
 *
 * raiseNeighbourLimits() raises the three limits for as long as the caller needs them and returns the
 * function that gives them back. Several labs (other processes too) may hold raised limits at once: a
 * state file under /run/userfan-lab records the values found before the first raise and what each live
 * holder asked for; the limits are the largest any live holder asked for, and the first values come back
 * when the last holder lets go (or dies: a holder whose process is gone is dropped at the next call).
 *
 * On a real fan there is one namespace per machine, so the sizing is per machine: a host that talks to
 * N−1 others on one L2 underlay needs gc_thresh3 ≥ N (plus its other neighbours), as any host on a big
 * flat network does.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { pidAlive } from '../control/pid.js';

const SYSCTL = '/proc/sys/net/ipv4/neigh/default';
const KEYS = ['gc_thresh1', 'gc_thresh2', 'gc_thresh3'] as const;
export type NeighbourLimits = Record<(typeof KEYS)[number], number>;

const STATE_DIR = '/run/userfan-lab';
const STATE = `${STATE_DIR}/neigh-limits.json`;
const LOCK = `${STATE}.lock`;

interface State {
  /** The limits before the first live holder raised them. */
  original: NeighbourLimits;
  /** pid → the neighbour entries that holder asked room for. */
  holders: Record<string, number>;
}

/** The kernel's neighbour-table limits now (initial namespace). */
export function readNeighbourLimits(): NeighbourLimits {
  const out = {} as NeighbourLimits;
  for (const k of KEYS) out[k] = Number(readFileSync(`${SYSCTL}/${k}`, 'utf8').trim());
  return out;
}

function writeLimits(l: NeighbourLimits): void {
  // gc_thresh3 first when growing, last when shrinking: the kernel does not check their order, but a
  // reader in between should never see thresh2 above thresh3.
  const keys = l.gc_thresh3 >= readNeighbourLimits().gc_thresh3 ? [...KEYS].reverse() : KEYS;
  for (const k of keys) writeFileSync(`${SYSCTL}/${k}`, `${l[k]}\n`);
}

/** Limits that fit `entries` neighbours: no garbage collection below them, the hard cap at twice. */
export function limitsFor(entries: number): NeighbourLimits {
  const n = Math.max(1024, Math.ceil(entries));
  return { gc_thresh1: n, gc_thresh2: n, gc_thresh3: 2 * n };
}

/** Neighbour entries a lab of `hosts` hosts talking all to all needs (ARP to each peer; the TUN's and the bridge's). */
export function labNeighbourEntries(hosts: number): number {
  return hosts * Math.max(0, hosts - 1) + 2 * hosts;
}

/** Runs fn holding the state file's lock (bounded: a lock older than 10 s is taken as left by a dead process). */
function locked<T>(fn: () => T): T {
  mkdirSync(STATE_DIR, { recursive: true });
  for (let i = 0; ; i++) {
    try {
      closeSync(openSync(LOCK, 'wx'));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > 10_000) rmSync(LOCK, { force: true });
      } catch {}
      if (i > 500) throw new Error(`${LOCK}: held for more than 5 s`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(LOCK, { force: true });
  }
}

function readState(): State | undefined {
  try {
    return JSON.parse(readFileSync(STATE, 'utf8')) as State;
  } catch {
    return undefined;
  }
}

/** Applies what the live holders ask for, or the original limits when none is left. */
function settle(s: State): void {
  for (const pid of Object.keys(s.holders)) if (!pidAlive(Number(pid))) delete s.holders[pid];
  const wants = Object.values(s.holders);
  if (wants.length === 0) {
    writeLimits(s.original);
    rmSync(STATE, { force: true });
    return;
  }
  const want = limitsFor(Math.max(...wants));
  writeLimits({
    gc_thresh1: Math.max(s.original.gc_thresh1, want.gc_thresh1),
    gc_thresh2: Math.max(s.original.gc_thresh2, want.gc_thresh2),
    gc_thresh3: Math.max(s.original.gc_thresh3, want.gc_thresh3),
  });
  writeFileSync(STATE, JSON.stringify(s) + '\n');
}

export interface RaisedLimits {
  /** The limits before this raise (what restore() brings back once no other holder needs more). */
  before: NeighbourLimits;
  /** The limits while held. */
  now: NeighbourLimits;
  /** Gives the limits back (idempotent; also run on process exit). */
  restore: () => void;
}

/**
 * Makes room for `entries` neighbours in the kernel's table (all namespaces together) until restore().
 * Never lowers a limit. Needs root (writes /proc/sys in the initial namespace).
 */
export function raiseNeighbourLimits(entries: number): RaisedLimits {
  const before = readNeighbourLimits();
  const me = String(process.pid);
  locked(() => {
    const s = readState() ?? { original: before, holders: {} };
    s.holders[me] = Math.max(s.holders[me] ?? 0, Math.ceil(entries));
    settle(s);
  });
  let done = false;
  const restore = () => {
    if (done) return;
    done = true;
    process.off('exit', restore);
    locked(() => {
      const s = readState();
      if (!s) return;
      delete s.holders[me];
      settle(s);
    });
  };
  process.on('exit', restore);
  return { before, now: readNeighbourLimits(), restore };
}

/** The kernel's neighbour-table counters (global: all namespaces), from the initial namespace's /proc. */
export function arpCacheStats(): { entries: number; tableFulls: number; forcedGcRuns: number } | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/net/stat/arp_cache', 'utf8');
  } catch {
    return undefined;
  }
  const [head, ...rows] = text.trim().split('\n');
  const cols = head.trim().split(/\s+/);
  const col = (name: string) => cols.indexOf(name);
  const sum = (name: string) => rows.reduce((a, r) => a + parseInt(r.trim().split(/\s+/)[col(name)] ?? '0', 16), 0);
  const first = rows[0]?.trim().split(/\s+/) ?? [];
  return { entries: parseInt(first[col('entries')] ?? '0', 16), tableFulls: sum('table_fulls'), forcedGcRuns: sum('forced_gc_runs') };
}
