/** What `show` and `stats` print about one daemon: its fans and its counters. */
import { formatCidr, formatIPv4 } from '../fan/addr.js';
import type { Fan } from '../fan/fan.js';
import type { DataPlane } from '../dataplane/pool.js';
import type { CounterSnapshot } from '../io/counters.js';
import type { DaemonState, FanRecord } from './state.js';

export function fanRecord(f: Fan): FanRecord {
  return {
    overlay: formatCidr(f.overlay.net, f.overlay.len),
    underlay: formatCidr(f.underlay.net, f.underlay.len),
    localHost: formatIPv4(f.localHost),
    slice: formatCidr(f.localSlice, f.sliceLen),
    bridge: f.bridge,
    flags: f.flags,
  };
}

export interface DaemonStatus {
  id: string;
  pid: number;
  startedAt: string;
  workers: number;
  tun: string;
  fans: FanRecord[];
  total: CounterSnapshot;
  perWorker: CounterSnapshot[];
  /** TUN offload state, when the data plane reports one. */
  offload?: string;
  /** How packets leave: "raw", "packet (N neighbours)", "gso (N neighbours)" (up --send; sendText). */
  send?: string;
  /** With up --send gso or packet: TX GSO, "on (IFACES)" or "off (why)". */
  txGso?: string;
  /** With up --send gso or packet: the neighbours the workers send to by MAC now. */
  neighbours?: { address: string; mac: string }[];
  /** Busy polling, µs (up --busy-poll); 0: off. */
  busyPollUs?: number;
}

export function statusOf(state: DaemonState, plane: DataPlane, offload?: string): DaemonStatus {
  const perWorker = [...Array(state.workers).keys()].map((i) => plane.counters.snapshot(i));
  return { id: state.id, pid: state.pid, startedAt: state.startedAt, workers: state.workers, tun: state.host.tun ?? state.id, fans: state.fans, total: plane.counters.total(), perWorker, offload, send: state.vxlan ? `vxlan: UDP ${state.vxlan.port}` : sendText(plane), txGso: plane.txGso,
    busyPollUs: state.busyPollUs ?? 0,
    neighbours: plane.neighbours?.entries().map((n) => ({ address: formatIPv4(n.address), mac: n.mac })) };
}

/**
 * "raw" (up --send raw); "gso (N neighbours)"; or, for --send gso without TX GSO (txGso says why),
 * "raw (gso without TX GSO)": then every packet goes through the raw socket.
 */
export function sendText(plane: DataPlane): string {
  const n = plane.neighbours?.size;
  if (n === undefined) return 'raw';
  if (!plane.txGsoOn) return 'raw (gso without TX GSO)';
  return `gso (${n} neighbour${n === 1 ? '' : 's'})`;
}

/**
 * fanctl's Flags column, in 0.12's words (`dhcp bridge=fan-10`, `enable`, `auto`), so scripts that read
 * `fanctl show` read this too: only what differs from the defaults. `host-reserve=N` follows 0.12's
 * `name=value` form, as does `type=vxlan` (0.12's own spellings of both are unconfirmed; ipip, userfan's
 * default, is left out); `no-nat` is userfan's own. `-` when nothing is set, so the columns after it stay
 * in place.
 */
export function flagsText(r: FanRecord, nat: boolean): string {
  const f: string[] = [];
  if (r.flags.dhcp) f.push('dhcp');
  if (r.flags.bridge !== undefined) f.push(`bridge=${r.flags.bridge}`);
  if (r.flags.hostReserve !== 1) f.push(`host-reserve=${r.flags.hostReserve}`);
  if (r.flags.type !== undefined && r.flags.type !== 'ipip') f.push(`type=${r.flags.type}`);
  if (r.flags.enable) f.push('enable');
  if (r.flags.auto) f.push('auto');
  if (!nat) f.push('no-nat');
  return f.join(' ') || '-';
}
