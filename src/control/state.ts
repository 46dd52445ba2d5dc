/**
 * Where a running daemon leaves word of itself, so `show` and `down` find it from another shell and
 * `down` can clean up after a crash or SIGKILL: /run/userfan/<tun>.json (what exists on the host) and
 * /run/userfan/<tun>.sock (the daemon's control socket, for live counters).
 */
import { mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import type { FanFlags } from '../fan/fan.js';
import type { HostState } from './hostnet.js';

/**
 * One directory per network namespace: a namespace is a host as far as the Fan is concerned, and two lab
 * hosts on one machine must not see (or clean up) each other's daemons. /run/userfan/net-<inode>.
 */
function netnsTag(): string {
  try {
    return `net-${/\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/net'))?.[1] ?? 'unknown'}`;
  } catch {
    return 'net-unknown';
  }
}
export const RUN_DIR = process.env.USERFAN_RUN_DIR ?? `/run/userfan/${netnsTag()}`;

export interface FanRecord {
  overlay: string;
  underlay: string;
  localHost: string;
  slice: string;
  bridge: string;
  flags: FanFlags;
}

export interface DaemonState {
  id: string;
  pid: number;
  startedAt: string;
  /** The daemon process's start time (/proc/PID/stat), so a reused pid is not taken for it (daemonAlive). */
  pidStart?: string;
  workers: number;
  ttl: number;
  nat: boolean;
  /** How packets leave (up --send); absent in state files of older versions: raw. */
  send?: 'raw' | 'packet' | 'gso';
  /** The fan type (up --type) when it is not IP-in-IP, with the VXLAN port and VNI. */
  type?: 'vxlan';
  vxlan?: { port: number; vni: number };
  /** Busy polling, µs (up --busy-poll); absent in state files of older versions: 0 (off). */
  busyPollUs?: number;
  /** The CPUs the workers are pinned to, worker i on cpus[i mod n] (up --cpus); absent: not pinned. */
  cpus?: number[];
  fans: FanRecord[];
  host: HostState;
}

export const statePath = (id: string) => `${RUN_DIR}/${id}.json`;
export const socketPath = (id: string) => `${RUN_DIR}/${id}.sock`;

export function writeState(s: DaemonState): void {
  const tmp = `${statePath(s.id)}.tmp`;
  // Another daemon of this namespace may remove the directory as it exits (removeState): make it again.
  for (let attempt = 0; ; attempt++) {
    mkdirSync(RUN_DIR, { recursive: true });
    try {
      writeFileSync(tmp, JSON.stringify(s, null, 2));
      renameSync(tmp, statePath(s.id));
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 2) throw e;
    }
  }
}

export function removeState(id: string): void {
  rmSync(statePath(id), { force: true });
  rmSync(socketPath(id), { force: true });
  // The namespace's directory goes with its last daemon (lab namespaces come and go by the hundred).
  try {
    rmdirSync(RUN_DIR);
  } catch {
    /* another daemon's state is still there, or it is gone already */
  }
}

/**
 * After a teardown of `s.host`: the state goes when everything was removed; otherwise it stays, listing
 * only what is left, so that `userfan show` says so and `userfan down` can try again.
 */
export function settleState(s: DaemonState, problems: readonly string[]): void {
  if (problems.length === 0) removeState(s.id);
  else writeState(s);
}

export function readStates(): DaemonState[] {
  let names: string[];
  try {
    names = readdirSync(RUN_DIR);
  } catch {
    return [];
  }
  const out: DaemonState[] = [];
  for (const n of names) {
    if (!n.endsWith('.json')) continue;
    try {
      out.push(JSON.parse(readFileSync(`${RUN_DIR}/${n}`, 'utf8')) as DaemonState);
    } catch {
      // a half-written file is replaced atomically by writeState; anything else is not ours
    }
  }
  return out;
}

export { daemonAlive, pidAlive } from './pid.js';

/** Ask a running daemon over its control socket; resolves with its JSON answer, rejects on timeout. */
export function ask<T = unknown>(id: string, request: Record<string, unknown>, timeoutMs = 2000): Promise<T> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath(id));
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`daemon ${id} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('connect', () => sock.write(`${JSON.stringify(request)}\n`));
    sock.on('data', (d) => (data += d));
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(data) as T);
      } catch (e) {
        reject(e);
      }
    });
  });
}
