/** `userfan show`: fanctl's table (Bridge, Underlay, Overlay, Flags) plus workers and packet counters. */
import { ask, type DaemonState, daemonAlive, readStates } from '../control/state.js';
import { flagsText, type DaemonStatus } from '../control/status.js';
import { formatCpuList } from '../control/cpus.js';

export interface ShowRow {
  bridge: string;
  /** The bridge existed before `up` and was adopted (a Docker network's, say): `down` leaves it in place. */
  adopted: boolean;
  /** userfan made the bridge with --keep-bridge: it stays at down, with its containers, for the next `up`. */
  kept: boolean;
  underlay: string;
  overlay: string;
  localHost: string;
  slice: string;
  flags: string;
  daemon: string;
  pid: number;
  state: 'up' | 'stale';
  workers: number;
  txPackets: number | null;
  /** Of txPackets, those that left by MAC: the segments of TX GSO's whole frames. */
  txLinkPackets: number | null;
  rxPackets: number | null;
  drops: number | null;
  dropsByReason?: Record<string, number>;
  /** TUN offloads: "on" or "off (why)"; null when the daemon did not answer. */
  offload: string | null;
  /** How packets leave (status.ts sendText): "gso (N neighbours)", "raw", "raw (gso without TX GSO)", "packet (N neighbours)"; null when the daemon did not answer. */
  send: string | null;
  /** The wire type: "ipip", or "vxlan (VNI N, UDP port P)". */
  type: string;
  /** TX GSO (up --send gso): "on (IFACES)" or "off (why)"; null where it does not apply (--send raw) or without an answer. */
  txGso: string | null;
  /** With --send gso: the neighbours sent to by MAC (address, MAC); absent otherwise or without an answer. */
  neighbours?: { address: string; mac: string }[];
  /** The CPUs the workers are pinned to, as taskset -c writes them (up --cpus); null: not pinned. */
  cpus: string | null;
  /** How long a worker looks again before it sleeps after sparse traffic, µs (up --busy-poll); 0: off. */
  busyPollUs: number;
}

export async function showRows(): Promise<ShowRow[]> {
  const rows: ShowRow[] = [];
  for (const s of readStates()) {
    const live = daemonAlive(s);
    let st: DaemonStatus | undefined;
    if (live) st = await ask<DaemonStatus>(s.id, { cmd: 'status' }).catch(() => undefined);
    for (const r of s.fans) {
      rows.push({
        bridge: r.bridge, adopted: s.host.adopted?.includes(r.bridge) ?? false, kept: s.host.kept?.includes(r.bridge) ?? false, underlay: r.underlay, overlay: r.overlay, localHost: r.localHost, slice: r.slice, flags: flagsText(r, s.nat),
        daemon: s.id, pid: s.pid, state: live ? 'up' : 'stale', workers: s.workers,
        txPackets: st?.total.txPackets ?? null, txLinkPackets: st?.total.txLinkPackets ?? null, rxPackets: st?.total.rxPackets ?? null, drops: st?.total.dropsTotal ?? null,
        dropsByReason: st?.total.drops as Record<string, number> | undefined,
        offload: st?.offload ?? null,
        send: st?.send ?? null,
        type: s.vxlan ? `vxlan (VNI ${s.vxlan.vni}, UDP port ${s.vxlan.port})` : 'ipip',
        txGso: st?.txGso ?? null,
        cpus: s.cpus?.length ? formatCpuList(s.cpus) : null,
        busyPollUs: s.busyPollUs ?? 0,
        ...(st?.neighbours ? { neighbours: st.neighbours } : {}),
      });
    }
  }
  return rows;
}

/** "2", or "2 on CPU 1" / "2 on CPUs 0-1" when pinned (up --cpus). */
function workersText(r: ShowRow): string {
  if (!r.cpus) return String(r.workers);
  return `${r.workers} on CPU${/^\d+$/.test(r.cpus) ? '' : 's'} ${r.cpus}`;
}

export function formatShow(rows: ShowRow[], states: DaemonState[] = []): string {
  void states;
  if (rows.length === 0) return 'no fans are up';
  const head = ['Bridge', 'Underlay', 'Overlay', 'Flags', 'Workers', 'TX pkts', 'RX pkts', 'Drops', 'State'];
  const body = rows.map((r) => [r.bridge, `${r.localHost}/${r.underlay.split('/')[1]}`, r.overlay, r.flags, workersText(r), String(r.txPackets ?? '-'), String(r.rxPackets ?? '-'), String(r.drops ?? '-'), r.state === 'up' ? `up (pid ${r.pid})` : `stale: pid ${r.pid} is gone, run userfan down`]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const table = [head, ...body].map((cols) => cols.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd());
  // Under the table, once per daemon that answered: how its packets leave and arrive; then each adopted or kept bridge.
  const paths = [...new Map(rows.filter((r) => r.send !== null).map((r) => [r.daemon, r])).values()].map(pathsText);
  const adopted = rows.filter((r) => r.adopted).map((r) => `bridge ${r.bridge} (adopted): it was there before userfan up, and stays at down`);
  const kept = rows.filter((r) => r.kept).map((r) => `bridge ${r.bridge} (kept): stays at down with its containers, for the next up (--keep-bridge; ip link del removes it)`);
  const notes = [...paths, ...adopted, ...kept];
  return [...table, ...(notes.length ? ['', ...notes] : [])].join('\n');
}

/**
 * "uf-250-0-28: send gso (1 neighbour), TX GSO on (eth0); TUN offloads on", or for the VXLAN type
 * "uf-250: vxlan (VNI 16384000, UDP port 8472); TAP offloads off (…)".
 */
function pathsText(r: ShowRow): string {
  if (r.type !== 'ipip') return `${r.daemon}: ${r.type}; TAP offloads ${r.offload ?? '?'}`;
  return `${r.daemon}: send ${r.send}${r.txGso !== null ? `, TX GSO ${r.txGso}` : ''}; TUN offloads ${r.offload ?? '?'}`;
}
