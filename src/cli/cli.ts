/**
 * The userfan command line: fanctl's verbs (up, down, show) plus explain, stats, trace and demo.
 * Usage errors and configuration errors print one line and exit 2; nothing is half created.
 *
 * Each command's module is loaded when that command runs: `up` (the daemon, which runs for days) carries
 * only what it needs, not show, trace, explain or Docker's helpers (issue 22: RSS per daemon).
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../fan/errors.js';
import { UsageError } from './fans-from-args.js';
import type { Handler } from './options.js';

export type { Handler } from './options.js';

const HELP = `userfan — Ubuntu's Fan networking in user space (IP-in-IP over TUN and raw sockets)

usage:
  userfan up -o OVERLAY -u UNDERLAY [--bridge NAME] [--host-reserve N] [--dhcp] [--workers N] [--ttl N] [--no-nat]
             [--metrics [HOST:]PORT] [--offload auto|on|off] [--no-trace]
             [--send gso|raw]              gso (default): TCP super-packets leave whole by MAC, the kernel cuts them
                                           (TX GSO), the rest through the raw socket; raw: every packet through
                                           the kernel's IP output (netfilter sees all)
             [--busy-poll US]              after sparse traffic a worker looks again for US µs before it sleeps (200; 0: off)
             [--cpus LIST]                 pin worker i to LIST's i-th lowest CPU (as taskset -c: 1, 0,2, 0-3)
             [--tun NAME]                  the TUN device's name (default uf- and the slice: uf-250-0-28)
             [--keep-bridge]               leave the bridge at exit (containers stay on it); the next up adopts it
             [--type ipip|vxlan]           the wire type (default ipip); vxlan: [--vxlan-port P] (8472) [--vni N] (overlay >> 8)
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

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Every command, as a loader of its handler. */
const commands: Record<string, () => Promise<Handler>> = {
  up: async () => (await import('./up.js')).upCommand,
  down: async () => (await import('./down.js')).downCommand,
  show: async () => (await import('./look.js')).showCommand,
  stats: async () => (await import('./look.js')).statsCommand,
  trace: async () => (await import('./look.js')).traceCommand,
  explain: async () => (await import('./look.js')).explainCommand,
  debug: async () => (await import('./look.js')).debugCommand,
  'enable-docker': async () => (await import('./docker.js')).enableDockerCommand,
  'disable-docker': async () => (await import('./docker.js')).disableDockerCommand,
  test: async () => (await import('./test-docker.js')).testCommand,
  cni: async () => (await import('../cni/install.js')).cniCommand,
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
  const handler = Object.hasOwn(commands, cmd) ? await commands[cmd]() : Object.hasOwn(more, cmd) ? more[cmd] : undefined;
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
