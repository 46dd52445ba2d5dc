/**
 * `userfan up`: the daemon's options, validated before anything is made (one line, exit 2), then the
 * daemon. Loaded only for `up`, so a daemon carries none of the other commands' modules.
 */
import { availableParallelism } from 'node:os';
import { ConfigError } from '../fan/errors.js';
import { type Fan, FAN_TYPES, type FanType } from '../fan/fan.js';
import { fansFromArgs, UsageError } from './fans-from-args.js';
import { SEND_PATHS, up, type SendPath } from '../control/daemon.js';
import { defaultVni, MAX_VNI, VXLAN_PORT } from '../wire/vxlan.js';
import { OFFLOAD_MODES, type OffloadMode } from '../tun/probe.js';
import { cpusOption } from '../control/cpus.js';
import { parseListen } from '../control/metrics.js';
import { DEFAULT_TTL } from '../wire/ipip.js';
import { DEFAULT_BUSY_POLL_US, MAX_BUSY_POLL_US } from '../dataplane/busy-poll.js';
import { fanOptions, intOption, opts } from './options.js';

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

export async function upCommand(args: string[]): Promise<number> {
  const { values, positionals } = opts(args, {
    ...fanOptions,
    bridge: { type: 'string' }, 'host-reserve': { type: 'string' }, dhcp: { type: 'boolean' }, workers: { type: 'string' },
    ttl: { type: 'string' }, 'no-nat': { type: 'boolean' }, tun: { type: 'string' }, metrics: { type: 'string' }, 'keep-bridge': { type: 'boolean' },
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
    keepBridge: !!values['keep-bridge'],
    tun: values.tun,
    metrics: values.metrics === undefined ? undefined : listenOption(values.metrics),
    offload: values.offload as OffloadMode | undefined,
    send: values.send as SendPath | undefined,
    trace: !values['no-trace'],
    cpus: values.cpus === undefined ? undefined : cpusOption('--cpus', values.cpus),
    busyPollUs: intOption('--busy-poll', values['busy-poll'], DEFAULT_BUSY_POLL_US, 0, MAX_BUSY_POLL_US),
    vxlan,
  });
}
