/**
 * The userfan command line: fanctl's verbs (up, down, show) plus explain, stats, trace and demo.
 * Usage errors and configuration errors print one line and exit 2; nothing is half created.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../fan/errors.js';
import { parseIPv4 } from '../fan/addr.js';
import { DEFAULT_FLAGS, Fan, FAN_TYPES, type FanType, validateFan } from '../fan/fan.js';
import { parseCidr, parseOverlay } from '../fan/parse.js';
import { explainAddress, formatExplanation } from '../debug/explain.js';
import { prefixMask } from '../fan/addr.js';
import { availableParallelism } from 'node:os';
import { fansFromArgs, UsageError } from './fans-from-args.js';
import { SEND_PATHS, up, type SendPath } from '../control/daemon.js';
import { defaultVni, MAX_VNI, VXLAN_PORT } from '../wire/vxlan.js';
import { OFFLOAD_MODES, type OffloadMode } from '../tun/probe.js';
import { daemonsFor, downDaemon } from './down.js';
import { disableDockerCommand, enableDockerCommand } from './docker.js';
import { testCommand } from './test-docker.js';
import { formatShow, showRows } from './show.js';
import { ask, pidAlive, readStates } from '../control/state.js';
import { explainLive, fansUp, formatLive } from '../debug/walk.js';
import { cpusOption } from '../control/cpus.js';
import { parseListen } from '../control/metrics.js';
import { collectStats, formatStats } from '../debug/stats.js';
import { DEFAULT_TTL } from '../wire/ipip.js';
import { DEFAULT_BUSY_POLL_US, MAX_BUSY_POLL_US } from '../dataplane/busy-poll.js';
import { trace } from '../debug/trace.js';
import { MAX_COUNT, MAX_SECONDS } from '../control/trace-server.js';


const HELP = `userfan — Ubuntu's Fan networking in user space (IP-in-IP over TUN and raw sockets)

usage:
  userfan up -o OVERLAY -u UNDERLAY [--bridge NAME] [--host-reserve N] [--dhcp] [--workers N] [--ttl N] [--no-nat]
             [--metrics [HOST:]PORT] [--offload auto|on|off] [--no-trace]
             [--send gso|raw]              gso (default): TCP super-packets leave whole by MAC, the kernel cuts them
                                           (TX GSO), the rest through the raw socket; raw: every packet through
                                           the kernel's IP output (netfilter sees all)
             [--busy-poll US]              after sparse traffic a worker looks again for US µs before it sleeps (200; 0: off)
             [--cpus LIST]                 pin worker i to LIST's i-th lowest CPU (as taskset -c: 1, 0,2, 0-3)
  userfan up -a [--config FILE]            every enabled fan of FILE (default /etc/network/fan)
  userfan down -o OVERLAY -u UNDERLAY | -a [--config FILE] | -e
  userfan show [--json]                    fans that are up: Bridge, Underlay, Overlay, Flags, workers, counters
  userfan stats [--watch] [--json] [--interval MS]   packets, bytes, rates, drops by reason, per worker
  userfan trace [-w FILE] [--count N] [--seconds S] [--filter ADDRESS]
                                           live capture, inner packet inside its outer one (pcap with -w),
                                           with the drop reason of each dropped one; at most N (100), S s (10)
  userfan explain ADDRESS -o OVERLAY -u UNDERLAY [--json]
  userfan explain ADDRESS [--from SOURCE] [--json]   against the fans that are up: where, and each step
  userfan enable-docker -u UNDERLAY -o OVERLAY [--config FILE] [--daemon-json FILE]
                                           the fan into FILE (persistent), Docker's daemon.json onto its bridge and MTU
  userfan disable-docker [-u UNDERLAY -o OVERLAY] [--daemon-json FILE]   undoes exactly what enable-docker did
  userfan test local-docker [-o OVERLAY -u UNDERLAY] [--image IMAGE] [-H DOCKER_HOST]   two containers, ping, data
  userfan cni install [--dir /opt/cni/bin] [--conf-dir DIR] [--print-config] [--name NAME] [-o OVERLAY] [--data-dir DIR]
                                           the CNI plugin (type userfan) and its network configuration (docs/cni.md)
  userfan demo [--keep] [--json] [--type ipip|vxlan]   two hosts in namespaces, container to container (root)
  userfan --help | --version

OVERLAY is a prefix such as 250.0.0.0/8; UNDERLAY is this host's address with the underlay's width
(172.30.0.28/16), an interface and a width (eth0/16), or the underlay network (172.30.0.0/16).`;

export type Handler = (args: string[]) => Promise<number> | number;

export function opts<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify.*$/s, ''));
  }
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

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

const fanOptions = {
  overlay: { type: 'string', short: 'o' },
  underlay: { type: 'string', short: 'u' },
  all: { type: 'boolean', short: 'a' },
  config: { type: 'string' },
} as const;

export function intOption(name: string, text: string | undefined, def: number, min: number, max: number): number {
  if (text === undefined) return def;
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) throw new ConfigError(name, text, `must be a whole number from ${min} to ${max}`);
  return Number(text);
}

function listenOption(text: string) {
  try {
    return parseListen(text);
  } catch {
    throw new ConfigError('--metrics', text, 'expected PORT or HOST:PORT, e.g. 127.0.0.1:9476 (loopback unless a host is given)');
  }
}

/**
 * Options that measured no better than the defaults and were removed (docs/performance.md): one line that
 * says what to use instead.
 */
function removedOptions(send: string | undefined, recv: string | undefined, txGso: string | undefined): void {
  if (send === 'packet') throw new ConfigError('--send', send, 'was removed: use --send gso (the default), which measured level with it');
  if (recv !== undefined) throw new ConfigError('--recv', recv, 'was removed: IP-in-IP arrives through the raw socket; leave --recv out');
  if (txGso !== undefined) throw new ConfigError('--tx-gso', txGso, 'was removed: use --send raw to cut every super-packet in user space and send it through the kernel\'s IP output');
}

/** The VXLAN port and VNI when the fans are of type vxlan (defaults: 8472, the overlay >> 8); refused for ipip. */
function vxlanOptions(fans: Fan[], portText: string | undefined, vniText: string | undefined): { port: number; vni: number } | undefined {
  if (fans[0]?.type !== 'vxlan') {
    if (portText !== undefined || vniText !== undefined) throw new ConfigError(portText !== undefined ? '--vxlan-port' : '--vni', (portText ?? vniText)!, 'applies to --type vxlan only');
    return undefined;
  }
  return { port: intOption('--vxlan-port', portText, VXLAN_PORT, 1, 65535), vni: intOption('--vni', vniText, defaultVni(fans[0].overlay.net), 0, MAX_VNI) };
}

const commands: Record<string, Handler> = {
  cni: async (args) => (await import('../cni/install.js')).cniCommand(args),
  'enable-docker': enableDockerCommand,
  'disable-docker': disableDockerCommand,
  test: testCommand,
  async up(args) {
    const { values, positionals } = opts(args, {
      ...fanOptions,
      bridge: { type: 'string' }, 'host-reserve': { type: 'string' }, dhcp: { type: 'boolean' }, workers: { type: 'string' },
      ttl: { type: 'string' }, 'no-nat': { type: 'boolean' }, tun: { type: 'string' }, metrics: { type: 'string' },
      offload: { type: 'string' }, send: { type: 'string' }, recv: { type: 'string' }, 'no-trace': { type: 'boolean' },
      cpus: { type: 'string' }, 'busy-poll': { type: 'string' }, 'tx-gso': { type: 'string' },
      type: { type: 'string' }, 'vxlan-port': { type: 'string' }, vni: { type: 'string' },
    });
    if (values.type !== undefined && !(FAN_TYPES as readonly string[]).includes(values.type)) throw new ConfigError('--type', values.type, 'must be ipip (IP-in-IP, protocol 4: fanctl\'s original) or vxlan (Ethernet in VXLAN over UDP: LXD\'s fan bridges)');
    if (values.offload !== undefined && !(OFFLOAD_MODES as readonly string[]).includes(values.offload)) throw new ConfigError('--offload', values.offload, 'must be auto, on or off');
    removedOptions(values.send, values.recv, values['tx-gso']);
    if (values.send !== undefined && !(SEND_PATHS as readonly string[]).includes(values.send)) {
      throw new ConfigError('--send', values.send, 'must be gso (TCP super-packets leave whole by MAC; the rest through the kernel\'s IP output) or raw (every packet through the kernel\'s IP output)');
    }
    if (positionals.length) throw new UsageError(`unexpected ${positionals.join(' ')}; see userfan --help`);
    const flags = {
      ...(values.bridge !== undefined ? { bridge: values.bridge } : {}),
      ...(values['host-reserve'] !== undefined ? { hostReserve: intOption('--host-reserve', values['host-reserve'], 1, 1, 1 << 24) } : {}),
      ...(values.dhcp ? { dhcp: true } : {}),
      ...(values.type !== undefined ? { type: values.type as FanType } : {}),
    };
    const fans = fansFromArgs({ ...values, flags });
    const vxlan = vxlanOptions(fans, values['vxlan-port'], values.vni);
    if (values.bridge !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(values.bridge)) throw new ConfigError('--bridge', values.bridge, 'must be 1-15 characters of letters, digits, . _ -');
    if (values.tun !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(values.tun)) throw new ConfigError('--tun', values.tun, 'must be 1-15 characters of letters, digits, . _ -');
    return up({
      fans,
      underlayTexts: fans.map((f) => values.underlay ?? f.toString()),
      workers: intOption('--workers', values.workers, availableParallelism(), 1, 64),
      ttl: intOption('--ttl', values.ttl, DEFAULT_TTL, 0, 255),
      nat: !values['no-nat'],
      dhcp: !!values.dhcp,
      tun: values.tun,
      metrics: values.metrics === undefined ? undefined : listenOption(values.metrics),
      offload: values.offload as OffloadMode | undefined,
      send: values.send as SendPath | undefined,
      trace: !values['no-trace'],
      cpus: values.cpus === undefined ? undefined : cpusOption('--cpus', values.cpus),
      busyPollUs: intOption('--busy-poll', values['busy-poll'], DEFAULT_BUSY_POLL_US, 0, MAX_BUSY_POLL_US),
      vxlan,
    });
  },

  /** A live capture from the daemons here: pcap with -w, else one line per packet. */
  async trace(args) {
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
    const live = readStates().filter((s) => pidAlive(s.pid));
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
  },

  async down(args) {
    const { values, positionals } = opts(args, { ...fanOptions, every: { type: 'boolean', short: 'e' } });
    if (positionals.length) throw new UsageError(`unexpected ${positionals.join(' ')}; see userfan --help`);
    const daemons = values.every ? readStates() : daemonsFor(fansFromArgs(values, true));
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
  },

  async stats(args) {
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
  },

  /** Fault injection and internals, for tests and for people debugging userfan itself. */
  async debug(args) {
    const [what, n] = args;
    if (what !== 'crash-worker' || n === undefined || !/^\d+$/.test(n)) throw new UsageError('usage: userfan debug crash-worker N   (makes worker N of every daemon here throw, to see it replaced)');
    const live = readStates().filter((s) => pidAlive(s.pid));
    if (live.length === 0) throw new UsageError('no fan is up in this network namespace');
    for (const s of live) console.log(`${s.id}: ${JSON.stringify(await ask(s.id, { cmd: 'crash-worker', worker: Number(n) }))}`);
    return 0;
  },

  async show(args) {
    const { values } = opts(args, { json: { type: 'boolean' } });
    const rows = await showRows();
    console.log(values.json ? JSON.stringify(rows) : formatShow(rows));
    return 0;
  },


  async explain(args) {
    const { values, positionals } = opts(args, { overlay: { type: 'string', short: 'o' }, underlay: { type: 'string', short: 'u' }, json: { type: 'boolean' }, from: { type: 'string' } });
    if (positionals.length !== 1) throw new UsageError('explain takes one ADDRESS, e.g. userfan explain 250.0.27.3 -o 250.0.0.0/8 -u 172.30.0.28/16');
    if (values.overlay === undefined && values.underlay === undefined) {
      // Against the fans that are up here.
      const live = await explainLive(fansUp(readStates().filter((s) => pidAlive(s.pid))), positionals[0], values.from);
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
  },
};

/** Runs one command line; `more` adds commands from outside the product (src/main.ts: the lab's demo). */
export async function main(argv: string[], more: Record<string, Handler> = {}): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(HELP);
    return cmd ? 0 : 2;
  }
  if (cmd === '--version' || cmd === '-V') {
    console.log(`userfan ${version()}`);
    return 0;
  }
  const handler = Object.hasOwn(commands, cmd) ? commands[cmd] : Object.hasOwn(more, cmd) ? more[cmd] : undefined;
  try {
    if (!handler) throw new UsageError(`unknown command ${JSON.stringify(cmd)}; see userfan --help`);
    return await handler(rest);
  } catch (e) {
    if (e instanceof ConfigError || e instanceof UsageError) {
      console.error(`userfan ${cmd}: ${e.message}`);
      return 2;
    }
    throw e;
  }
}
