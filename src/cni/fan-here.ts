/**
 * The fan the plugin attaches to, learned from the running daemon in the flannel way: `userfan up` leaves
 * its state in /run/userfan/net-<namespace inode>/ (control/state.ts: each fan's overlay, underlay, slice,
 * bridge and host-reserve); the bridge itself says whether it is up, holds the slice's .1 and its MTU.
 */
import { formatIPv4, parseIPv4 } from '../fan/addr.js';
import { parseOverlay, parseUnderlay } from '../fan/parse.js';
import { run } from '../io/exec.js';
import { ConfigError } from '../fan/errors.js';
import { daemonAlive, readStates, type DaemonState, type FanRecord } from '../control/state.js';
import { badConfig, CniError, CODE } from './errors.js';
import type { NetConf } from './config.js';
import type { FanHere } from './delegate.js';

interface Candidate {
  daemon: DaemonState;
  fan: FanRecord;
}

const describe = (c: Candidate) => `${c.fan.overlay} over ${c.fan.underlay} (bridge ${c.fan.bridge})`;

/** Whether the config's underlay (`198.18.0.28/16`, `198.18.0.0/16`, `eth0/16`) is this fan's. */
function underlayMatches(conf: NetConf, c: Candidate): boolean {
  let u;
  try {
    u = parseUnderlay(conf.underlay!);
  } catch (e) {
    if (e instanceof ConfigError) throw badConfig('underlay', conf.underlay, e.rule);
    throw e;
  }
  const [net, len] = c.fan.underlay.split('/');
  return u.prefix.len === Number(len) && u.prefix.net === parseIPv4(net) && u.localHost === parseIPv4(c.fan.localHost);
}

/** The one live fan the configuration names (or the only one up here). */
function choose(conf: NetConf, live: Candidate[]): Candidate {
  const wanted = [conf.overlay && `overlay ${conf.overlay}`, conf.bridge && `bridge ${conf.bridge}`].filter(Boolean).join(', ');
  let found = live;
  if (conf.overlay !== undefined) {
    const o = parseOverlay(conf.overlay);
    found = found.filter((c) => {
      const t = parseOverlay(c.fan.overlay);
      return t.net === o.net && t.len === o.len;
    });
  }
  if (conf.bridge !== undefined) found = found.filter((c) => c.fan.bridge === conf.bridge);
  if (found.length === 0) {
    const up = live.length ? `; up here: ${live.map(describe).join(', ')}` : '';
    throw new CniError(CODE.tryAgainLater, `fan not up here: ${live.length === 0 ? 'no userfan is running in this network namespace' : `no fan with ${wanted}`}${up}; start it with userfan up -o OVERLAY -u UNDERLAY (see docs/cni.md)`);
  }
  if (found.length > 1) throw badConfig(conf.overlay ? 'bridge' : 'overlay', conf.overlay ?? conf.bridge, `${found.length} fans are up here (${found.map(describe).join(', ')}): name one with "overlay" or "bridge"`);
  const c = found[0];
  if (conf.underlay !== undefined && !underlayMatches(conf, c)) {
    throw badConfig('underlay', conf.underlay, `the fan up here is ${c.fan.overlay} over ${c.fan.underlay} with this host ${c.fan.localHost}: fix underlay or leave it out`);
  }
  return c;
}

/**
 * The bridge's MTU when it holds `address`, else 0. Asked of the kernel by netlink (`ip`), not read from
 * /sys (a runtime may run the plugin under `nsenter --net`, where /sys still shows another namespace),
 * nor from os.networkInterfaces() (which leaves out a bridge without ports: it has no carrier).
 */
async function mtuHolding(bridge: string, address: string): Promise<number> {
  const r = await run(['ip', '-j', '-4', 'addr', 'show', 'dev', bridge], { allowFail: true, timeoutMs: 10_000 });
  if (r.code !== 0) return 0;
  try {
    const [link] = JSON.parse(r.stdout) as { mtu?: number; addr_info?: { local?: string }[] }[];
    return link?.addr_info?.some((a) => a.local === address) ? (link.mtu ?? 0) : 0;
  } catch {
    return 0;
  }
}

/** The fan this configuration attaches to, up and ready; CniError 11 when it is not (yet). */
export async function fanHere(conf: NetConf): Promise<FanHere> {
  const live = readStates().filter((s) => daemonAlive(s)).flatMap((daemon) => daemon.fans.map((fan) => ({ daemon, fan })));
  const { daemon, fan } = choose(conf, live);
  const gateway = formatIPv4(parseIPv4(fan.slice.split('/')[0]) + 1);
  const mtu = await mtuHolding(fan.bridge, gateway);
  if (!mtu) {
    throw new CniError(CODE.tryAgainLater, `fan not up here: userfan (pid ${daemon.pid}) has not brought bridge ${fan.bridge} up with ${gateway} yet; try again once userfan up says ready`);
  }
  const type = fan.flags.type ?? daemon.type ?? 'ipip';
  return { overlay: fan.overlay, underlay: fan.underlay, slice: fan.slice, bridge: fan.bridge, hostReserve: fan.flags.hostReserve ?? 1, type, mtu };
}
