// The Fan demo topology of ../shared/LAB.md, built from namespaces:
//   hosts A 198.18.0.28, B 198.18.0.27 (C 198.18.0.26, D .25, … when asked) on a 1500-MTU underlay
//   (a direct veth for two hosts, a bridge namespace for three or more), lo up, ip_forward=1;
//   each host owns the slice 250.0.<last octet>.0/24 of 250.0.0.0/8 over 198.18.0.0/16
//   (and, with secondWidth, 250.1.<last>.0/24 of 250.1.0.0/16 over 198.18.7.0/24);
//   containers are namespaces attached by veth to a bridge in the host namespace.
import { Lab, type LabOptions } from './netns.js';
import { labNeighbourEntries, raiseNeighbourLimits, readNeighbourLimits, type RaisedLimits } from './neighbour-limits.js';
import type { ProcessHandle, RunOptions, RunResult, SpawnOptions } from './exec.js';

// ---- small IPv4 helpers (kept local: the lab must not depend on the code it tests) ----

export function ipToInt(ip: string): number {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`bad IPv4 address ${ip}`);
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function maskOf(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** The overlay slice (network, prefix length) a Fan gives to `underlayHost`. */
export function fanSlice(
  overlay: string,
  overlayLen: number,
  underlayHost: string,
  underlayLen: number,
): { network: string; prefixLen: number } {
  const hostBits = 32 - underlayLen;
  const prefixLen = overlayLen + hostBits;
  if (prefixLen > 32) throw new Error('fan slice longer than /32');
  const hostPart = ipToInt(underlayHost) & ~maskOf(underlayLen);
  const net = ((ipToInt(overlay) & maskOf(overlayLen)) | ((hostPart << (32 - prefixLen)) >>> 0)) >>> 0;
  return { network: intToIp(net), prefixLen };
}

/** fanctl's bridge name for a slice: `fan-250-0-28` for 250.0.28.0/24. */
export function fanBridgeName(sliceNetwork: string, prefixLen: number): string {
  const octets = sliceNetwork.split('.').slice(0, Math.ceil(prefixLen / 8));
  return 'fan-' + octets.join('-');
}

// ---- types ----

export interface FanSlice {
  overlay: string; // e.g. 250.0.0.0/8
  underlay: string; // e.g. 198.18.0.0/16
  network: string; // 250.0.28.0
  prefixLen: number; // 24
  cidr: string; // 250.0.28.0/24
  gateway: string; // 250.0.28.1 (the bridge address fanctl/userfan use)
  bridge: string; // fan-250-0-28
}

export interface Host {
  name: string; // 'A', 'B', …
  ns: string;
  underlayIf: string;
  underlay: string; // 198.18.0.28
  underlayLen: number; // 16
  underlayCidr: string; // 198.18.0.28/16 (what `userfan up -u` takes)
  slice: FanSlice; // 250.0.0.0/8 over 198.18.0.0/16
  underlay2?: string; // 198.18.7.28 (secondWidth)
  slice2?: FanSlice; // 250.1.0.0/16 over 198.18.7.0/24
}

export interface Container {
  name: string; // e.g. 'A-c1'
  ns: string;
  host: Host;
  bridge: string;
  address: string;
  prefixLen: number;
  gateway: string;
  mtu: number;
  ifname: string; // inside the container: 'eth0'
  hostIf: string; // the bridge port in the host namespace
}

export type Target = Host | Container | string | undefined;

export interface HostSpec {
  name: string;
  underlay: string; // in 198.18.0.0/16
  underlay2?: string; // in 198.18.7.0/24
}

export interface TopologyOptions extends LabOptions {
  /** Number of hosts (default 2): A .28, B .27, C .26, … Ignored when `specs` is given. */
  hosts?: number;
  specs?: HostSpec[];
  /** Also give each host 198.18.7.<x>/24 for the second width 250.1.0.0/16 over 198.18.7.0/24. */
  secondWidth?: boolean;
  /** Underlay MTU (default 1500). */
  underlayMtu?: number;
  /** Force a bridge namespace even for two hosts. */
  underlayBridge?: boolean;
  /** Build inside an existing lab (it is then not destroyed by topology.destroy()). */
  lab?: Lab;
  /**
   * Make room in the kernel's neighbour table, shared by all namespaces, for all hosts talking to all
   * (src/lab/neighbour-limits.ts) when it has too little (default true; false keeps the machine's limits,
   * to show what happens without). The limits come back on destroy().
   */
  neighbourRoom?: boolean;
}

export interface ContainerOptions {
  /** Bridge in the host namespace (default: the host's fan bridge, e.g. fan-250-0-28). */
  bridge?: string;
  /** Default: the host's slice .3, .4, … (first container .3, as in the seed demo). */
  address?: string;
  prefixLen?: number; // default 24
  /** Default route. Default: the bridge's IPv4 address. */
  gateway?: string;
  /** Default: the bridge's MTU. */
  mtu?: number;
  /** Namespace suffix (default `<host>-c<n>`). */
  name?: string;
  /** How long to wait for the bridge to appear (someone else, e.g. `userfan up`, may create it). Default 5000 ms. */
  waitForBridgeMs?: number;
  /** Turn off TX checksum offload on the container's veth (ethtool -K eth0 tx off). */
  txChecksumOff?: boolean;
}

const NET1 = { overlay: '250.0.0.0', overlayLen: 8, underlayNet: '198.18.0.0', underlayLen: 16 };
const NET2 = { overlay: '250.1.0.0', overlayLen: 16, underlayNet: '198.18.7.0', underlayLen: 24 };

function makeSlice(net: typeof NET1, hostAddr: string): FanSlice {
  const s = fanSlice(net.overlay, net.overlayLen, hostAddr, net.underlayLen);
  return {
    overlay: `${net.overlay}/${net.overlayLen}`,
    underlay: `${net.underlayNet}/${net.underlayLen}`,
    network: s.network,
    prefixLen: s.prefixLen,
    cidr: `${s.network}/${s.prefixLen}`,
    gateway: intToIp(ipToInt(s.network) + 1),
    bridge: fanBridgeName(s.network, s.prefixLen),
  };
}

export function defaultHostSpecs(n: number, secondWidth = false): HostSpec[] {
  if (n < 1 || n > 20) throw new Error(`hosts: 1..20, got ${n}`);
  return Array.from({ length: n }, (_, i) => ({
    name: String.fromCharCode(65 + i),
    underlay: `198.18.0.${28 - i}`,
    underlay2: secondWidth ? `198.18.7.${28 - i}` : undefined,
  }));
}

function inLab(addr: string, net: string, len: number): boolean {
  return (ipToInt(addr) & maskOf(len)) === (ipToInt(net) & maskOf(len));
}

// ---- the topology ----

export class FanTopology {
  readonly containers: Container[] = [];
  /** The neighbour-table limits this topology raised (createFanTopology), given back on destroy(). */
  neighbourLimits?: RaisedLimits;
  private readonly bridges = new Map<string, { address?: string; mtu: number }>();
  private containerSeq = new Map<string, number>();

  constructor(
    readonly lab: Lab,
    readonly hosts: Host[],
    readonly underlayNs: string | undefined,
    private readonly ownsLab: boolean,
  ) {}

  get prefix(): string {
    return this.lab.prefix;
  }

  host(name: string): Host {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${name}`);
    return h;
  }

  /** The host whose underlay address (either width) is `addr`. */
  hostByUnderlay(addr: string): Host | undefined {
    return this.hosts.find((h) => h.underlay === addr || h.underlay2 === addr);
  }

  private nsOf(t: Target): string | undefined {
    return typeof t === 'string' || t === undefined ? t : t.ns;
  }

  /** Run argv in a host, a container or a namespace by name (undefined: the root namespace). */
  exec(t: Target, argv: readonly string[], opts: Omit<RunOptions, 'ns'> = {}): Promise<RunResult> {
    return this.lab.exec(this.nsOf(t), argv, opts);
  }

  /** Start a long-running process in a host/container; the lab stops it on destroy(). */
  spawn(t: Target, argv: readonly string[], opts: Omit<SpawnOptions, 'ns'> = {}): ProcessHandle {
    return this.lab.spawn(this.nsOf(t), argv, opts);
  }

  /** A bridge in the host namespace with an address (e.g. '250.0.28.1/24') and MTU; up. */
  async addBridge(host: Host, name: string, cidr?: string, mtu = 1480): Promise<void> {
    const ns = host.ns;
    await this.lab.exec(ns, ['ip', 'link', 'add', 'name', name, 'type', 'bridge']);
    await this.lab.exec(ns, ['ip', 'link', 'set', 'dev', name, 'mtu', String(mtu)]);
    if (cidr) await this.lab.exec(ns, ['ip', 'addr', 'add', cidr, 'dev', name]);
    await this.lab.exec(ns, ['ip', 'link', 'set', 'dev', name, 'up']);
    this.bridges.set(`${ns}/${name}`, { address: cidr?.split('/')[0], mtu });
  }

  /** Bridge address and MTU as the kernel reports them (waits up to waitMs for the bridge to exist). */
  async bridgeInfo(host: Host, name: string, waitMs = 5000): Promise<{ address?: string; prefixLen?: number; mtu: number }> {
    const until = Date.now() + waitMs;
    for (;;) {
      const r = await this.lab.exec(host.ns, ['ip', '-j', 'addr', 'show', 'dev', name], { allowFail: true });
      if (r.code === 0 && r.stdout.trim()) {
        const [info] = JSON.parse(r.stdout) as {
          mtu: number;
          addr_info?: { family: string; local: string; prefixlen: number }[];
        }[];
        const v4 = info.addr_info?.find((a) => a.family === 'inet');
        return { address: v4?.local, prefixLen: v4?.prefixlen, mtu: info.mtu };
      }
      if (Date.now() >= until) throw new Error(`bridge ${name} does not exist in ${host.ns} (host ${host.name})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * A container namespace attached by veth to `bridge` in the host namespace, with address/prefixLen,
   * a default route via gateway, lo up and IPv6 off.
   */
  async addContainer(host: Host, opts: ContainerOptions = {}): Promise<Container> {
    const bridge = opts.bridge ?? host.slice.bridge;
    const info = await this.bridgeInfo(host, bridge, opts.waitForBridgeMs ?? 5000);
    const seq = (this.containerSeq.get(host.name) ?? 0) + 1;
    this.containerSeq.set(host.name, seq);
    const slice = host.slice2 && bridge === host.slice2.bridge ? host.slice2 : host.slice;
    const address = opts.address ?? intToIp(ipToInt(slice.network) + 2 + seq);
    const prefixLen = opts.prefixLen ?? (opts.address ? (info.prefixLen ?? 24) : slice.prefixLen);
    const gateway = opts.gateway ?? info.address;
    const mtu = opts.mtu ?? info.mtu;
    const name = opts.name ?? `${host.name}-c${seq}`;
    const ns = await this.lab.addNamespace(name);
    const hostIf = this.lab.nextIfName('c');
    const ifname = 'eth0';
    await this.lab.addVeth({ ns: host.ns, name: hostIf, mtu }, { ns, name: ifname, mtu });
    await this.lab.exec(host.ns, ['ip', 'link', 'set', 'dev', hostIf, 'master', bridge]);
    await this.lab.exec(ns, ['ip', 'addr', 'add', `${address}/${prefixLen}`, 'dev', ifname]);
    if (gateway) await this.lab.exec(ns, ['ip', 'route', 'add', 'default', 'via', gateway, 'dev', ifname]);
    if (opts.txChecksumOff) await this.lab.exec(ns, ['ethtool', '-K', ifname, 'tx', 'off']);
    const c: Container = { name, ns, host, bridge, address, prefixLen, gateway: gateway ?? '', mtu, ifname, hostIf };
    this.containers.push(c);
    return c;
  }

  /** Ping from a host/container; resolves { ok, rttMs (average) } and never throws for loss. */
  async ping(from: Target, to: string, opts: { count?: number; timeoutS?: number; size?: number; df?: boolean } = {}): Promise<{ ok: boolean; received: number; rttMs?: number; output: string }> {
    const count = opts.count ?? 1;
    const timeoutS = opts.timeoutS ?? 2;
    const argv = ['ping', '-n', '-q', '-c', String(count), '-W', String(timeoutS), '-i', '0.2'];
    if (opts.size !== undefined) argv.push('-s', String(opts.size));
    if (opts.df) argv.push('-M', 'do');
    argv.push(to);
    const r = await this.exec(from, argv, { allowFail: true, timeoutMs: (timeoutS + count) * 1000 + 5000 });
    if (/exec of "ping" failed/.test(r.stderr)) throw new Error('ping is not installed (Debian package iputils-ping)');
    const rec = /(\d+) received/.exec(r.stdout);
    const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
    const received = rec ? Number(rec[1]) : 0;
    return { ok: r.code === 0 && received > 0, received, rttMs: rtt ? Number(rtt[1]) : undefined, output: r.stdout + r.stderr };
  }

  /** Destroy the lab (if this topology created it). Idempotent. */
  async destroy(): Promise<void> {
    try {
      if (this.ownsLab) await this.lab.destroy();
    } finally {
      this.neighbourLimits?.restore();
    }
  }
}

/** Build hosts on an underlay. On any failure the lab is destroyed and the error rethrown. */
export async function createFanTopology(opts: TopologyOptions = {}): Promise<FanTopology> {
  const specs = opts.specs ?? defaultHostSpecs(opts.hosts ?? 2, opts.secondWidth);
  for (const s of specs) {
    if (!inLab(s.underlay, NET1.underlayNet, NET1.underlayLen)) throw new Error(`${s.underlay} is outside 198.18.0.0/16`);
    if (s.underlay2 && !inLab(s.underlay2, NET2.underlayNet, NET2.underlayLen)) throw new Error(`${s.underlay2} is outside 198.18.7.0/24`);
  }
  const mtu = opts.underlayMtu ?? 1500;
  const ownsLab = !opts.lab;
  const lab = opts.lab ?? (await Lab.create(opts));
  // Half the hard cap at most for this topology: other labs share the table.
  const entries = labNeighbourEntries(specs.length);
  const room = opts.neighbourRoom !== false && entries > readNeighbourLimits().gc_thresh3 / 2 ? raiseNeighbourLimits(entries) : undefined;
  try {
    const hosts: Host[] = [];
    for (const s of specs) {
      const ns = await lab.addNamespace(s.name, { forwarding: true });
      hosts.push({
        name: s.name,
        ns,
        underlayIf: lab.ifName(`u${s.name}`),
        underlay: s.underlay,
        underlayLen: NET1.underlayLen,
        underlayCidr: `${s.underlay}/${NET1.underlayLen}`,
        slice: makeSlice(NET1, s.underlay),
        underlay2: s.underlay2,
        slice2: s.underlay2 ? makeSlice(NET2, s.underlay2) : undefined,
      });
    }
    let underlayNs: string | undefined;
    if (hosts.length === 2 && !opts.underlayBridge) {
      const [a, b] = hosts;
      await lab.addVeth({ ns: a.ns, name: a.underlayIf, mtu }, { ns: b.ns, name: b.underlayIf, mtu });
    } else if (hosts.length > 1 || opts.underlayBridge) {
      underlayNs = await lab.addNamespace('ul');
      const br = lab.ifName('br');
      await lab.exec(underlayNs, ['ip', 'link', 'add', 'name', br, 'type', 'bridge']);
      await lab.exec(underlayNs, ['ip', 'link', 'set', 'dev', br, 'mtu', String(mtu), 'up']);
      for (const h of hosts) {
        const port = lab.ifName(`p${h.name}`);
        await lab.addVeth({ ns: h.ns, name: h.underlayIf, mtu }, { ns: underlayNs, name: port, mtu });
        await lab.exec(underlayNs, ['ip', 'link', 'set', 'dev', port, 'master', br]);
      }
    } else {
      // a single host still gets an underlay interface (a dummy) so addresses exist
      const h = hosts[0];
      await lab.exec(h.ns, ['ip', 'link', 'add', 'name', h.underlayIf, 'type', 'dummy']);
      await lab.exec(h.ns, ['ip', 'link', 'set', 'dev', h.underlayIf, 'mtu', String(mtu), 'up']);
    }
    for (const h of hosts) {
      await lab.exec(h.ns, ['ip', 'addr', 'add', h.underlayCidr, 'dev', h.underlayIf]);
      if (h.underlay2) await lab.exec(h.ns, ['ip', 'addr', 'add', `${h.underlay2}/${NET2.underlayLen}`, 'dev', h.underlayIf]);
    }
    const topo = new FanTopology(lab, hosts, underlayNs, ownsLab);
    topo.neighbourLimits = room;
    return topo;
  } catch (e) {
    if (ownsLab) await lab.destroy();
    room?.restore();
    throw e;
  }
}
