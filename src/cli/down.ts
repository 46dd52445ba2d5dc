/**
 * `userfan down`: stop the daemon that carries a fan (SIGTERM: it tears down what it made), or, when
 * that daemon is gone (crash, SIGKILL), remove what its state file says it made.
 */
import { formatCidr } from '../fan/addr.js';
import { ConfigError } from '../fan/errors.js';
import type { Fan } from '../fan/fan.js';
import { teardown } from '../control/hostnet.js';
import { daemonAlive, type DaemonState, pidAlive, readStates, settleState } from '../control/state.js';
import { fansFromArgs, UsageError } from './fans-from-args.js';
import { fanOptions, opts } from './options.js';

const STOP_WAIT_MS = 10_000;

export interface DownReport {
  daemon: string;
  pid: number;
  how: 'stopped' | 'killed' | 'cleaned-after-crash';
  problems: string[];
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!pidAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return !pidAlive(pid);
}

/** Bring down one daemon, whatever state it is in. */
export async function downDaemon(s: DaemonState): Promise<DownReport> {
  if (daemonAlive(s)) {
    process.kill(s.pid, 'SIGTERM');
    if (await waitGone(s.pid, STOP_WAIT_MS)) {
      // It cleaned up after itself unless it died half-way; whatever the state file still lists goes now.
      const left = readStates().find((x) => x.id === s.id);
      const problems = left ? await teardown(left.host) : [];
      if (left) settleState(left, problems);
      return { daemon: s.id, pid: s.pid, how: 'stopped', problems };
    }
    process.kill(s.pid, 'SIGKILL');
    await waitGone(s.pid, 2000);
    const problems = await teardown(s.host);
    settleState(s, problems);
    return { daemon: s.id, pid: s.pid, how: 'killed', problems };
  }
  const problems = await teardown(s.host);
  settleState(s, problems);
  return { daemon: s.id, pid: s.pid, how: 'cleaned-after-crash', problems };
}

/**
 * The daemons carrying these fans (same overlay and underlay). A fan that is not up is a ConfigError,
 * unless `upOnly` (down -a: those of the config file's fans that are up, `off` ones included).
 */
export function daemonsFor(fans: Fan[], upOnly = false): DaemonState[] {
  const states = readStates();
  const found = new Map<string, DaemonState>();
  for (const f of fans) {
    const o = formatCidr(f.overlay.net, f.overlay.len);
    const u = formatCidr(f.underlay.net, f.underlay.len);
    const s = states.find((x) => x.fans.some((r) => r.overlay === o && r.underlay === u));
    if (!s) {
      if (upOnly) continue;
      throw new ConfigError('fan', f.toString(), 'is not up on this host (see userfan show)');
    }
    found.set(s.id, s);
  }
  return [...found.values()];
}

/** `userfan down`: the daemons of the fans named (or every one with -e), each stopped and cleaned up. */
export async function downCommand(args: string[]): Promise<number> {
  const { values, positionals } = opts(args, { ...fanOptions, every: { type: 'boolean', short: 'e' } });
  if (positionals.length) throw new UsageError(`unexpected ${positionals.join(' ')}; see userfan --help`);
  const daemons = values.every ? readStates() : daemonsFor(fansFromArgs(values, true), values.all === true);
  if (daemons.length === 0) {
    console.log('no fans are up');
    return 0;
  }
  let code = 0;
  for (const d of daemons) {
    const r = await downDaemon(d);
    console.log(`${d.fans.map((f) => `${f.overlay} over ${f.underlay}`).join(', ')}: down (${r.how}, pid ${r.pid})`);
    for (const p of r.problems) {
      console.error(`  could not remove ${p}`);
      code = 1;
    }
  }
  return code;
}
