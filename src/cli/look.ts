/**
 * The commands that look at fans that are up (show, stats, trace, explain) and the debug hook. Loaded on
 * demand: a daemon never carries them.
 */
import { parseIPv4, prefixMask } from '../fan/addr.js';
import { ConfigError } from '../fan/errors.js';
import { DEFAULT_FLAGS, Fan, validateFan } from '../fan/fan.js';
import { parseCidr, parseOverlay } from '../fan/parse.js';
import { explainAddress, formatExplanation } from '../debug/explain.js';
import { explainLive, fansUp, formatLive } from '../debug/walk.js';
import { collectStats, formatStats } from '../debug/stats.js';
import { trace } from '../debug/trace.js';
import { MAX_COUNT, MAX_SECONDS } from '../control/trace-server.js';
import { ask, daemonAlive, readStates } from '../control/state.js';
import { formatShow, showRows } from './show.js';
import { UsageError } from './fans-from-args.js';
import { intOption, opts } from './options.js';

/** `explain` needs no interface on this host: the underlay's address (or network) is taken as written. */
function fanFromText(overlayText: string | undefined, underlayText: string | undefined): { fan: Fan; hostKnown: boolean } {
  if (!overlayText) throw new UsageError('missing -o OVERLAY (e.g. -o 250.0.0.0/8)');
  if (!underlayText) throw new UsageError('missing -u UNDERLAY (e.g. -u 172.30.0.28/16)');
  const overlay = parseOverlay(overlayText);
  const { address, len } = parseCidr('underlay', underlayText);
  const net = (address & prefixMask(len)) >>> 0;
  const host = address === net && len < 31 ? (net + 1) >>> 0 : address;
  const fan = new Fan(overlay, { net, len }, host, DEFAULT_FLAGS);
  validateFan(fan, overlayText, underlayText);
  return { fan, hostKnown: host === address };
}

/** A live capture from the daemons here: pcap with -w, else one line per packet. */
export async function traceCommand(args: string[]): Promise<number> {
  const { values, positionals } = opts(args, {
    write: { type: 'string', short: 'w' }, count: { type: 'string', short: 'c' }, seconds: { type: 'string' }, filter: { type: 'string' },
  });
  if (positionals.length) throw new UsageError(`unexpected ${positionals.join(' ')}; see userfan --help`);
  let filter = 0;
  if (values.filter !== undefined) {
    try {
      filter = parseIPv4(values.filter);
    } catch {
      throw new ConfigError('--filter', values.filter, 'is not an IPv4 address (four decimal octets 0-255)');
    }
    if (filter === 0) throw new ConfigError('--filter', values.filter, 'must be a host address (0.0.0.0 means no filter: leave it out)');
  }
  const count = intOption('--count', values.count, 100, 1, MAX_COUNT);
  const seconds = intOption('--seconds', values.seconds, 10, 1, MAX_SECONDS);
  const live = readStates().filter((s) => daemonAlive(s));
  if (live.length === 0) throw new UsageError('no fan is up in this network namespace: nothing to trace');
  let r;
  try {
    r = await trace(live.map((s) => s.id), { cmd: 'trace', count, seconds, filter }, values.write, (line) => console.log(line));
  } catch (e) {
    console.error(`userfan trace: ${(e as Error).message}`);
    return 1;
  }
  for (const e of r.errors) console.error(`userfan trace: ${e}`);
  console.error(`${r.packets} packet${r.packets === 1 ? '' : 's'}${values.write ? ` written to ${values.write}` : ''}${r.dropped ? `; ${r.dropped} not captured (trace buffer full)` : ''}`);
  return 0;
}

export async function statsCommand(args: string[]): Promise<number> {
  const { values } = opts(args, { watch: { type: 'boolean', short: 'w' }, json: { type: 'boolean' }, interval: { type: 'string' } });
  const interval = intOption('--interval', values.interval, 1000, 100, 60_000);
  let prev: Awaited<ReturnType<typeof collectStats>>['raw'] | undefined;
  for (;;) {
    const { stats, raw } = await collectStats(interval, prev);
    prev = raw;
    if (values.json) console.log(JSON.stringify(stats));
    else {
      if (values.watch) process.stdout.write('\x1b[H\x1b[2J');
      console.log(formatStats(stats));
    }
    if (!values.watch) return 0;
  }
}

/** Fault injection and internals, for tests and for people debugging userfan itself. */
export async function debugCommand(args: string[]): Promise<number> {
  const [what, n] = args;
  if (what !== 'crash-worker' || n === undefined || !/^\d+$/.test(n)) throw new UsageError('usage: userfan debug crash-worker N   (makes worker N of every daemon here throw, to see it replaced)');
  const live = readStates().filter((s) => daemonAlive(s));
  if (live.length === 0) throw new UsageError('no fan is up in this network namespace');
  for (const s of live) console.log(`${s.id}: ${JSON.stringify(await ask(s.id, { cmd: 'crash-worker', worker: Number(n) }))}`);
  return 0;
}

export async function showCommand(args: string[]): Promise<number> {
  const { values } = opts(args, { json: { type: 'boolean' } });
  const rows = await showRows();
  console.log(values.json ? JSON.stringify(rows) : formatShow(rows));
  return 0;
}

export async function explainCommand(args: string[]): Promise<number> {
  const { values, positionals } = opts(args, { overlay: { type: 'string', short: 'o' }, underlay: { type: 'string', short: 'u' }, json: { type: 'boolean' }, from: { type: 'string' } });
  if (positionals.length !== 1) throw new UsageError('explain takes one ADDRESS, e.g. userfan explain 250.0.27.3 -o 250.0.0.0/8 -u 172.30.0.28/16');
  if (values.overlay === undefined && values.underlay === undefined) {
    // Against the fans that are up here.
    const live = await explainLive(fansUp(readStates().filter((s) => daemonAlive(s))), positionals[0], values.from);
    console.log(values.json ? JSON.stringify(live) : formatLive(live));
    return 0;
  }
  if (values.from !== undefined) throw new UsageError('--from walks a packet through the fans that are up: leave out -o/-u');
  const { fan, hostKnown } = fanFromText(values.overlay, values.underlay);
  let addr: number;
  try {
    addr = parseIPv4(positionals[0]);
  } catch {
    throw new ConfigError('address', positionals[0], 'is not an IPv4 address (four decimal octets 0-255)');
  }
  const e = explainAddress(fan, addr, positionals[0], hostKnown);
  if (values.json) {
    console.log(JSON.stringify({ address: e.address, underlayHost: e.underlayHost, slice: e.slice, bridge: e.bridge, hostAddress: e.hostAddress, fan: e.fan, local: e.local, outer: e.outer ?? null }));
  } else console.log(formatExplanation(e));
  return 0;
}
