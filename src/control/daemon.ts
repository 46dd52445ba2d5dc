/**
 * `userfan up`: set the host up as fanctl would (hostnet.ts), start the worker pool, and stay in the
 * foreground (for systemd) until SIGTERM/SIGINT, then tear down everything it made. State lives in
 * /run/userfan so `show` and `down` work from another shell, and `down` cleans up after a SIGKILL.
 *
 * Logs are JSON lines on stdout, one per event (never per packet).
 */
import { createServer, type Server } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { metricsRegistry, serveMetrics } from './metrics.js';
import { existsSync, rmSync } from 'node:fs';
import { formatCidr, formatIPv4 } from '../fan/addr.js';
import { ConfigError } from '../fan/errors.js';
import { type Fan, TYPE_OVERHEAD } from '../fan/fan.js';
import { FanTable, prefixesOverlap } from '../fan/table.js';
import { parseOverlay } from '../fan/parse.js';
import { DataPlane } from '../dataplane/pool.js';
import { DEFAULT_BUSY_POLL_US } from '../dataplane/busy-poll.js';
import { native } from '../io/native.js';
import { DEFAULT_POLICY } from '../wire/ipip.js';
import { bringUpFan, checkBridge, createTun, emptyState, teardown, tunNameFor, underlayInterface } from './hostnet.js';
import { formatCpuList } from './cpus.js';
import { hasNetAdmin } from './privileges.js';
import { serveTrace, type TraceRequest } from './trace-server.js';
import { daemonAlive, type DaemonState, readStates, RUN_DIR, settleState, socketPath, writeState } from './state.js';
import { procStart } from './pid.js';
import { fanRecord, statusOf } from './status.js';
import { isoTime } from './iso-time.js';
import { decideOffload, type OffloadMode } from '../tun/probe.js';

export interface UpOptions {
  fans: Fan[];
  /** What the user wrote for each fan's underlay (for messages). */
  underlayTexts: string[];
  workers: number;
  ttl: number;
  nat: boolean;
  dhcp: boolean;
  /** Leave the bridges userfan makes at exit, for the next `up` to adopt with their containers (--keep-bridge). */
  keepBridge?: boolean;
  tun?: string;
  /** Serve Prometheus metrics here. */
  metrics?: { host: string; port: number };
  /** TUN offloads: auto (default: on unless the kernel refuses), on (fail if refused), off. */
  offload?: OffloadMode;
  /**
   * How packets leave: gso (default): TCP super-packets leave whole by MAC for the kernel to cut (TX GSO,
   * src/underlay/gso.ts), everything else through the raw IP socket; raw: every packet through the raw IP
   * socket, i.e. the kernel's IP output (routing, netfilter, neighbours) per packet (src/underlay/raw.ts).
   */
  send?: SendPath;
  /** false: refuse `userfan trace`; the workers then skip even the per-batch check for one. */
  trace?: boolean;
  /** Pin worker i to cpus[i mod n] (src/control/cpus.ts); absent: the scheduler places the workers. */
  cpus?: number[];
  /** Busy polling in the workers, µs (src/dataplane/busy-poll.ts); absent: DEFAULT_BUSY_POLL_US; 0: off. */
  busyPollUs?: number;
  /** The VXLAN type's port and VNI (its fans have type vxlan); absent for IP-in-IP. */
  vxlan?: { port: number; vni: number };
}

export const SEND_PATHS = ['gso', 'raw'] as const;
export type SendPath = (typeof SEND_PATHS)[number];
/**
 * gso: TCP super-packets leave whole by MAC where the kernel takes the TC program (TX GSO), the rest
 * through the raw socket; where TX GSO is off (no TUN offloads, an older kernel, no Ethernet underlay)
 * that is what raw does. `--send raw` keeps every packet on the kernel's IP output (netfilter OUTPUT).
 */
export const DEFAULT_SEND: SendPath = 'gso';

/**
 * USERFAN_NEIGHBOUR_REFRESH_MS (100 to 3,600,000), for tests only: how often the neighbour copy is
 * refreshed regardless of misses. Anything else: the default.
 */
function neighbourRefreshMs(): number | undefined {
  const v = Number(process.env.USERFAN_NEIGHBOUR_REFRESH_MS);
  return Number.isInteger(v) && v >= 100 && v <= 3_600_000 ? v : undefined;
}

export function log(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ time: isoTime(), event, ...fields })}\n`);
}

/** Refuse, before creating anything, a fan that is already up (EEXIST) or overlaps one that is. */
async function checkNotUp(fans: Fan[]): Promise<void> {
  for (const s of readStates()) {
    if (!daemonAlive(s)) {
      log('stale-state', { daemon: s.id, pid: s.pid, action: 'cleaning up what a dead userfan left' });
      const problems = await teardown(s.host);
      settleState(s, problems);
      if (problems.length) log('stale-cleanup-problems', { daemon: s.id, problems });
      continue;
    }
    for (const r of s.fans) {
      const theirs = parseOverlay(r.overlay);
      for (const f of fans) {
        if (!prefixesOverlap(theirs, f.overlay)) continue;
        const same = theirs.net === f.overlay.net && theirs.len === f.overlay.len;
        throw new ConfigError('fan', f.toString(), `${same ? 'is already up on this host (EEXIST)' : `overlaps ${r.overlay}, which is up on this host`}: userfan pid ${s.pid}, bridge ${r.bridge}; run userfan down first`);
      }
    }
  }
}

/**
 * Devices deleted from under the daemon (ip link del): say what happened and stop. The workers notice a
 * deleted TUN on their own (POLLERR); a deleted bridge only shows here. Once stopping has begun, the
 * teardown deletes them itself: not a fault then.
 */
function watchDevices(devices: readonly string[], stopping: () => boolean, fatal: (why: string) => void): void {
  const watch = setInterval(() => {
    if (stopping()) return clearInterval(watch);
    for (const dev of devices) {
      if (!existsSync(`/sys/class/net/${dev}`)) {
        clearInterval(watch);
        log('fatal', { error: `${dev} was deleted from under userfan` });
        fatal(`${dev} deleted`);
        return;
      }
    }
  }, 250);
  watch.unref();
}

/** The daemon's control socket: one JSON request per connection (status, trace, crash-worker). */
function serveControl(id: string, workers: number, plane: DataPlane, status: () => ReturnType<typeof statusOf>): Server {
  return createServer((conn) => {
    let buf = '';
    conn.on('data', (d) => {
      buf += d;
      if (!buf.includes('\n')) return;
      let req: { cmd?: string; worker?: number };
      try {
        req = JSON.parse(buf);
      } catch {
        conn.end('{"error":"bad request"}');
        return;
      }
      conn.removeAllListeners('data');
      if (req.cmd === 'trace') serveTrace(conn, plane, req as TraceRequest, log, id);
      else if (req.cmd === 'status') conn.end(JSON.stringify(status()));
      else if (req.cmd === 'crash-worker' && typeof req.worker === 'number' && req.worker >= 0 && req.worker < workers) {
        plane.crash(req.worker);
        conn.end('{"ok":true}');
      } else conn.end('{"error":"unknown command"}');
    });
    conn.on('error', () => {});
  });
}

/**
 * Before anything is made: every fan of a daemon has one type; a VXLAN daemon has one fan (its TAP is a
 * port of one bridge) and a VXLAN port it can bind; a bridge that exists already can be adopted (checkBridge).
 */
async function checkType(o: UpOptions, underlayMtus: number[]): Promise<void> {
  const type = o.fans[0].type;
  const other = o.fans.find((f) => f.type !== type);
  if (other) throw new ConfigError('fan', other.toString(), `is ${other.type} where ${o.fans[0]} is ${type}: one daemon carries one type; run one userfan per type`);
  if ((type === 'vxlan') !== (o.vxlan !== undefined)) throw new ConfigError('--type', type, 'the fans\' type and the VXLAN settings disagree');
  if (o.vxlan && o.fans.length > 1) throw new ConfigError('fan', o.fans.map(String).join(', '), 'a VXLAN daemon carries one fan (its TAP is a port of one bridge): run one userfan per VXLAN fan');
  for (const [i, f] of o.fans.entries()) await checkBridge(f, underlayMtus[i] - TYPE_OVERHEAD[f.type]);
  if (o.vxlan) {
    let fd = -1;
    try {
      // Exclusive: another userfan's VXLAN sockets (SO_REUSEPORT) would otherwise take this one into their
      // group, and the kernel would split the datagrams between the two daemons.
      fd = native().udpOpen({ port: o.vxlan.port, exclusive: true });
    } catch (e) {
      const why = (e as { code?: string }).code === 'EADDRINUSE'
        ? 'is already in use in this network namespace (a kernel vxlan device, or another userfan --type vxlan? see ss -ulpn): remove it or pick another port'
        : (e as Error).message;
      throw new ConfigError('--vxlan-port', String(o.vxlan.port), why);
    } finally {
      if (fd >= 0) native().close(fd);
    }
  }
}

export async function up(o: UpOptions): Promise<number> {
  if (!hasNetAdmin()) throw new ConfigError('up', o.fans.map(String).join(', '), 'needs CAP_NET_ADMIN to create the TUN device, bridge and routes: run as root');
  new FanTable(o.fans); // duplicates/overlaps among the fans of this invocation
  const underlays = await Promise.all(o.fans.map((f, i) => underlayInterface(f, o.underlayTexts[i])));
  await checkNotUp(o.fans);
  await checkType(o, underlays.map((u) => u.mtu));

  const id = o.tun ?? tunNameFor(o.fans[0]);
  const state: DaemonState = {
    id, pid: process.pid, pidStart: procStart(process.pid), startedAt: isoTime(), workers: o.workers, ttl: o.ttl, nat: o.nat, send: o.send ?? DEFAULT_SEND,
    busyPollUs: o.busyPollUs ?? DEFAULT_BUSY_POLL_US,
    ...(o.cpus?.length ? { cpus: o.cpus } : {}), ...(o.vxlan ? { type: 'vxlan' as const, vxlan: o.vxlan } : {}), fans: o.fans.map(fanRecord), host: emptyState(),
  };
  const save = () => writeState(state);
  let plane: DataPlane | undefined;
  let offload = { on: false, text: 'off' };
  let server: Server | undefined;
  let metricsServer: HttpServer | undefined;
  let finishing: Promise<void> | undefined;

  const finish = (code: number, why: string) => {
    finishing ??= (async () => {
      log('stopping', { reason: why });
      server?.close();
      metricsServer?.close();
      await plane?.stop();
      const problems = await teardown(state.host);
      settleState(state, problems);
      if (problems.length) log('teardown-problems', { problems });
      for (const fan of o.fans) {
        const r = fanRecord(fan);
        // An adopted or kept bridge stays, with its containers: say so where the operator reads the log.
        const left = state.host.kept?.includes(r.bridge) ? 'kept' : state.host.adopted?.includes(r.bridge) ? 'adopted' : undefined;
        log('fan-down', { overlay: r.overlay, underlay: r.underlay, slice: r.slice, bridge: r.bridge, ...(left ? { bridgeLeft: left } : {}) });
      }
      log('down', { daemon: id });
      process.exitCode = code;
      // Nothing else should keep the loop alive; exit explicitly in case a handle lingers.
      setImmediate(() => process.exit(code));
    })();
    return finishing;
  };

  try {
    save();
    const overhead = TYPE_OVERHEAD[o.fans[0].type];
    await createTun(state.host, id, Math.min(...underlays.map((u) => u.mtu)) - overhead, save, o.vxlan ? 'tap' : 'tun');
    for (const [i, fan] of o.fans.entries()) {
      await bringUpFan(state.host, fan, id, underlays[i].mtu, { nat: o.nat, dhcp: o.dhcp || fan.flags.dhcp, keepBridge: o.keepBridge, runDir: RUN_DIR }, save);
      log('fan-up', { ...fanRecord(fan), ...(state.host.adopted?.includes(fan.bridge) ? { adopted: true } : {}), ...(state.host.kept?.includes(fan.bridge) ? { kept: true } : {}), type: fan.type, tun: id, underlayInterface: underlays[i].iface, mtu: underlays[i].mtu - overhead });
    }
    offload = decideOffload(id, o.offload ?? 'auto', o.vxlan !== undefined);
    log('offload', { offload: offload.text });
    const send = o.send ?? DEFAULT_SEND;
    const links = send === 'gso'
      ? o.fans.map((f, i) => ({ iface: underlays[i].iface, ifindex: native().ifIndex(underlays[i].iface), net: f.underlay.net, len: f.underlay.len, local: f.localHost }))
      : undefined;
    log('send', { send, ...(links ? { interfaces: [...new Set(links.map((l) => l.iface))] } : {}) });
    plane = new DataPlane({
      tun: id, fans: o.fans, workers: o.workers, cpus: o.cpus, busyPollUs: state.busyPollUs, ttl: o.ttl, policy: DEFAULT_POLICY, offload: offload.on, links, neighbourRefreshMs: neighbourRefreshMs(), trace: o.trace !== false, vxlan: o.vxlan, log,
      onFatal: (why) => {
        log('fatal', { error: why });
        void finish(1, why);
      },
    });
    await plane.start();
  } catch (e) {
    log('up-failed', { error: (e as Error).message });
    await plane?.stop().catch(() => {});
    const problems = await teardown(state.host);
    settleState(state, problems);
    if (problems.length) log('teardown-problems', { problems });
    throw e;
  }

  watchDevices([id, ...state.host.bridges, ...(state.host.adopted ?? []), ...(state.host.kept ?? [])], () => finishing !== undefined, (why) => void finish(1, why));

  process.on('SIGTERM', () => void finish(0, 'SIGTERM'));
  process.on('SIGINT', () => void finish(0, 'SIGINT'));

  rmSync(socketPath(id), { force: true });
  writeState(state); // (again: the directory may have gone with another daemon of this namespace)
  const p = plane;
  server = serveControl(id, o.workers, p, () => statusOf(state, p, offload.text));
  server.listen(socketPath(id));
  if (o.metrics) {
    try {
      metricsServer = await serveMetrics(o.metrics, metricsRegistry(() => statusOf(state, p, offload.text)));
      log('metrics', { url: `http://${o.metrics.host.includes(':') ? `[${o.metrics.host}]` : o.metrics.host}:${o.metrics.port}/metrics` });
    } catch (e) {
      log('metrics-failed', { error: (e as Error).message });
      await finish(1, `cannot serve metrics on ${o.metrics.host}:${o.metrics.port}: ${(e as Error).message}`);
    }
  }
  log('ready', {
    daemon: id, pid: process.pid, tun: id, workers: o.workers, busyPollUs: state.busyPollUs, ...(o.cpus?.length ? { cpus: formatCpuList(o.cpus) } : {}),
    fans: o.fans.map((f) => `${formatCidr(f.overlay.net, f.overlay.len)} over ${formatCidr(f.underlay.net, f.underlay.len)} (this host ${formatIPv4(f.localHost)}, slice ${formatCidr(f.localSlice, f.sliceLen)}, bridge ${f.bridge})`),
  });
  return new Promise<number>(() => {}); // runs until a signal or a fatal error ends the process
}
