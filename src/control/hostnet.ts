/**
 * What `userfan up` does to the host, step by step, the way fanctl does it with a TUN device where
 * fanctl uses tunl0: the TUN (multi-queue, persistent, so workers attach their own queues), the fan
 * bridge holding the slice's .1 at MTU underlay − 20, a route for each overlay into the TUN with source
 * .1, ip_forward=1, an SNAT table for traffic leaving the overlay (nftables, a table of userfan's own)
 * and, with dhcp, dnsmasq on the bridge.
 *
 * Every step records what it made in the HostState before the next step runs, so teardown() removes
 * exactly what exists, after a failure half-way, a SIGTERM, or a SIGKILL (from the state file).
 *
 * A bridge that exists already (Docker's, LXC's) is adopted when it holds this host's fan address
 * (bridge-adopt.ts): used as userfan's own would be, and left in place, with its address, at teardown.
 * With --keep-bridge the bridge userfan makes is left so too: the next `up` adopts it, its containers
 * still attached.
 */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { formatCidr, formatIPv4, parseIPv4, prefixMask } from '../fan/addr.js';
import { ConfigError } from '../fan/errors.js';
import { type Fan, TYPE_OVERHEAD } from '../fan/fan.js';
import { localAddresses } from '../fan/parse.js';
import { run } from '../io/exec.js';
import { type Adoption, type ExistingLink, planAdoption } from './bridge-adopt.js';
import { pidAlive } from './pid.js';

/** What exists on the host because of one daemon. Serialised as the state file. */
export interface HostState {
  tun?: string;
  /** Bridges userfan made: deleted at teardown. */
  bridges: string[];
  /** Bridges that existed and were adopted (bridge-adopt.ts): left in place at teardown, routes on them removed. */
  adopted?: string[];
  /**
   * Bridges userfan made with --keep-bridge: left in place at teardown with their address and ports, as
   * adopted ones are, so that containers stay attached across a restart (the next `up` adopts them).
   */
  kept?: string[];
  routes: { dst: string; dev: string }[];
  nftTables: string[];
  dnsmasqPids: number[];
  /** Files made for them (dnsmasq's pid and lease files), removed with them. */
  files?: string[];
}

export const emptyState = (): HostState => ({ bridges: [], routes: [], nftTables: [], dnsmasqPids: [] });

const ip = (args: string[]) => run(['ip', ...args], { timeoutMs: 10_000 });

/** True when an interface of that name exists in this namespace. */
export async function linkExists(name: string): Promise<boolean> {
  const r = await run(['ip', 'link', 'show', 'dev', name], { allowFail: true });
  return r.code === 0;
}

interface IpLink {
  mtu: number;
  linkinfo?: { info_kind?: string };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

/** The device named `name` as bridge-adopt.ts needs it (kind, MTU, IPv4 addresses, ports), or undefined when there is none. */
export async function readLink(name: string): Promise<ExistingLink | undefined> {
  const r = await run(['ip', '-j', '-d', 'addr', 'show', 'dev', name], { allowFail: true });
  if (r.code !== 0) return undefined;
  const [l] = JSON.parse(r.stdout) as IpLink[];
  const ports = JSON.parse((await run(['ip', '-j', 'link', 'show', 'master', name], { allowFail: true })).stdout || '[]') as { ifname: string; mtu: number }[];
  return {
    kind: l.linkinfo?.info_kind ?? '',
    mtu: l.mtu,
    addresses: (l.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => ({ address: parseIPv4(a.local), len: a.prefixlen })),
    ports: ports.map((p) => ({ name: p.ifname, mtu: p.mtu })),
  };
}

/**
 * Before anything is made: undefined when `up` is to make the fan's bridge, how to adopt it when it exists
 * and may be adopted; ConfigError when it exists and may not (not a bridge, another address, a port's MTU).
 */
export async function checkBridge(fan: Fan, fanMtu: number): Promise<Adoption | undefined> {
  const link = await readLink(fan.bridge);
  return link && planAdoption(fan, fanMtu, link);
}

/** The MTU of the interface holding `address`, and its name; ConfigError when no interface has it. */
export async function underlayInterface(fan: Fan, underlayText: string): Promise<{ iface: string; mtu: number }> {
  const found = localAddresses().find((a) => a.address === fan.localHost);
  if (!found) {
    throw new ConfigError('underlay', underlayText, `${formatIPv4(fan.localHost)} is not an address of any interface on this host; give this host's underlay address`);
  }
  const mtu = Number(readFileSync(`/sys/class/net/${found.iface}/mtu`, 'utf8').trim());
  return { iface: found.iface, mtu };
}

/** The TUN's name for a daemon: `uf` + the first fan's bridge suffix (`uf-250-0-28`), at most 15 characters. */
export function tunNameFor(fan: Fan): string {
  return `uf${fan.bridge.replace(/^fan/, '')}`.slice(0, 15);
}

/** nftables table name for a fan's SNAT. */
export const nftTableFor = (fan: Fan) => `userfan_${fan.bridge.replace(/[^A-Za-z0-9]/g, '_')}`;

export interface UpOptions {
  nat: boolean;
  dhcp: boolean;
  /** Leave the bridge userfan makes (and DHCP's leases) at teardown: `up --keep-bridge`. */
  keepBridge?: boolean;
  /** The directory for dnsmasq's pid and lease files. */
  runDir: string;
}

/** Create the TUN device (or, for VXLAN, the TAP; multi-queue, persistent) and bring it up at `mtu`. */
export async function createTun(state: HostState, name: string, mtu: number, onChange: () => void, mode: 'tun' | 'tap' = 'tun'): Promise<void> {
  if (await linkExists(name)) throw new ConfigError('tun', name, 'a device of that name already exists on this host (is another userfan up? see userfan show)');
  await ip(['tuntap', 'add', 'dev', name, 'mode', mode, 'multi_queue']);
  state.tun = name;
  onChange();
  await ip(['link', 'set', 'dev', name, 'mtu', String(mtu), 'txqueuelen', '1000', 'up']);
}

/** Make the fan's bridge (kept at teardown with `keep`), or adopt the one that exists (checkBridge); either way up, holding slice.1. */
async function makeOrAdoptBridge(state: HostState, fan: Fan, mtu: number, keep: boolean, onChange: () => void): Promise<Adoption | undefined> {
  const br = fan.bridge;
  const adopt = await checkBridge(fan, mtu);
  if (adopt) {
    (state.adopted ??= []).push(br);
    onChange();
    await ip(['link', 'set', 'dev', br, ...(adopt.mtu ? ['mtu', String(adopt.mtu)] : []), 'up']);
    return adopt;
  }
  await ip(['link', 'add', 'name', br, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
  if (keep) (state.kept ??= []).push(br);
  else state.bridges.push(br);
  onChange();
  await ip(['link', 'set', 'dev', br, 'mtu', String(mtu), 'up']);
  await ip(['addr', 'add', `${formatIPv4(fan.hostAddress)}/${fan.bridgePrefixLen}`, 'dev', br]);
  // host-reserve N: the host keeps .1 to .N of its slice, each on the bridge, as fanctl does (one batch).
  const reserved = Array.from({ length: fan.flags.hostReserve - 1 }, (_, i) => `address add ${formatIPv4(fan.hostAddress + 1 + i)}/${fan.bridgePrefixLen} dev ${br}\n`);
  if (reserved.length) await run(['ip', '-batch', '-'], { input: reserved.join(''), timeoutMs: 60_000 });
  return undefined;
}

/** Everything for one fan on top of the TUN: bridge (made or adopted), route, forwarding, NAT, DHCP. */
export async function bringUpFan(state: HostState, fan: Fan, tun: string, underlayMtu: number, opts: UpOptions, onChange: () => void): Promise<void> {
  const br = fan.bridge;
  const mtu = underlayMtu - TYPE_OVERHEAD[fan.type];
  const slice = formatCidr(fan.localSlice, fan.sliceLen);
  const overlay = formatCidr(fan.overlay.net, fan.overlay.len);
  const adopted = await makeOrAdoptBridge(state, fan, mtu, opts.keepBridge === true, onChange);
  if (fan.type === 'vxlan') {
    // One L2 segment over the whole overlay: the bridge's address covers it; the TAP is a port of it.
    await ip(['link', 'set', 'dev', tun, 'master', br]);
    if (adopted?.overlayRoute) {
      // An adopted bridge holding slice.1 with the slice's prefix (Docker's --subnet): the rest of the
      // overlay is on the same segment, through the TAP port.
      await ip(['route', 'add', overlay, 'dev', br, 'src', formatIPv4(fan.hostAddress)]);
      state.routes.push({ dst: overlay, dev: br });
      onChange();
    }
  } else {
    await ip(['route', 'add', overlay, 'dev', tun, 'src', formatIPv4(fan.hostAddress)]);
    state.routes.push({ dst: overlay, dev: tun });
    onChange();
  }
  writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
  if (opts.nat) {
    const table = nftTableFor(fan);
    const script = [
      `table ip ${table} {`,
      '  chain fan-egress {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      `    ip saddr ${slice} ip daddr != ${overlay} oifname != "${br}" snat to ${formatIPv4(fan.localHost)}`,
      '  }',
      '}',
    ].join('\n');
    await run(['nft', '-f', '-'], { input: script });
    state.nftTables.push(table);
    onChange();
  }
  if (opts.dhcp) {
    const pidFile = `${opts.runDir}/${br}.dnsmasq.pid`;
    const child = spawn(
      'dnsmasq',
      [
        '--keep-in-foreground', '--conf-file=/dev/null', '--port=0', `--interface=${br}`, '--bind-interfaces', '--except-interface=lo',
        `--dhcp-range=${formatIPv4(fan.firstContainerAddress)},${formatIPv4(fan.lastContainerAddress)},${formatIPv4(prefixMask(fan.bridgePrefixLen))},12h`,
        `--dhcp-option=option:router,${formatIPv4(fan.hostAddress)}`, `--dhcp-option=option:mtu,${mtu}`,
        `--dhcp-leasefile=${opts.runDir}/${br}.leases`, `--pid-file=${pidFile}`,
      ],
      { stdio: 'ignore', detached: true },
    );
    child.unref();
    if (child.pid) state.dnsmasqPids.push(child.pid);
    // A kept bridge keeps its containers and so their leases: the next dnsmasq must not hand them out again.
    (state.files ??= []).push(pidFile, ...(opts.keepBridge ? [] : [`${opts.runDir}/${br}.leases`]));
    onChange();
  }
}

/**
 * Remove everything the state records, in reverse order of creation. Never throws: each step that fails
 * is reported in the returned list, and the rest still runs. What could not be removed stays in the
 * state, so that a later teardown (`userfan down`) can try again.
 */
export async function teardown(state: HostState): Promise<string[]> {
  const problems: string[] = [];
  const attempt = async (what: string, f: () => Promise<unknown>): Promise<boolean> => {
    try {
      await f();
      return true;
    } catch (e) {
      problems.push(`${what}: ${(e as Error).message.split('\n').slice(-1)[0]}`);
      return false;
    }
  };
  for (const pid of state.dnsmasqPids) {
    if (pidAlive(pid)) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {}
    }
  }
  // Its files go once it has exited (it may still write its lease file on the way out).
  const until = Date.now() + 2000;
  while (state.dnsmasqPids.some(pidAlive) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  for (const pid of state.dnsmasqPids.filter(pidAlive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  state.dnsmasqPids = [];
  for (const f of (state.files ?? []).splice(0)) rmSync(f, { force: true });
  for (const t of state.nftTables.splice(0)) {
    const gone = await attempt(`nft table ${t}`, async () => {
      const r = await run(['nft', 'delete', 'table', 'ip', t], { allowFail: true });
      if (r.code !== 0 && !/No such file/.test(r.stderr)) throw new Error(r.stderr.trim());
    });
    if (!gone) state.nftTables.push(t);
  }
  // Routes on devices userfan deletes go with them; those on an adopted or kept bridge are removed here.
  for (const r of state.routes.splice(0).filter((x) => state.adopted?.includes(x.dev) || state.kept?.includes(x.dev))) {
    await attempt(`route ${r.dst} dev ${r.dev}`, async () => {
      const res = await run(['ip', 'route', 'del', r.dst, 'dev', r.dev], { allowFail: true });
      if (res.code !== 0 && !/No such process|Cannot find device/.test(res.stderr)) throw new Error(res.stderr.trim());
    });
  }
  for (const br of state.bridges.splice(0)) {
    const gone = await attempt(`bridge ${br}`, async () => {
      if (await linkExists(br)) await ip(['link', 'del', 'dev', br]);
    });
    if (!gone) state.bridges.push(br);
  }
  if (state.tun) {
    const tun = state.tun;
    const gone = await attempt(`tun ${tun}`, async () => {
      if (await linkExists(tun)) await ip(['link', 'del', 'dev', tun]);
    });
    if (gone) {
      state.tun = undefined;
      // Routes go with their device; deleting the TUN removed them.
      state.routes = [];
    }
  }
  return problems;
}
