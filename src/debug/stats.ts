/**
 * `userfan stats [--watch] [--json]`: per worker and in total, packets, bytes, rates, and drops by
 * reason (every reason has a counter; the text shows those that are not zero), from every daemon in this
 * network namespace, read over their control sockets.
 */
import { DROP_REASONS } from '../wire/drops.js';
import { ask, daemonAlive, readStates } from '../control/state.js';
import type { DaemonStatus } from '../control/status.js';
import type { CounterSnapshot } from '../io/counters.js';

export interface Rates {
  txPps: number;
  rxPps: number;
  txGbps: number;
  rxGbps: number;
}

export interface DaemonStats extends DaemonStatus {
  rates: Rates;
  /** Every drop reason with its count, zeros included. */
  dropsAll: Record<string, number>;
}

const rate = (a: CounterSnapshot, b: CounterSnapshot, s: number): Rates => ({
  txPps: (b.txPackets - a.txPackets) / s,
  rxPps: (b.rxPackets - a.rxPackets) / s,
  txGbps: ((b.txBytes - a.txBytes) * 8) / s / 1e9,
  rxGbps: ((b.rxBytes - a.rxBytes) * 8) / s / 1e9,
});

async function sample(): Promise<DaemonStatus[]> {
  const out: DaemonStatus[] = [];
  for (const s of readStates()) {
    if (!daemonAlive(s)) continue;
    const st = await ask<DaemonStatus>(s.id, { cmd: 'status' }).catch(() => undefined);
    if (st) out.push(st);
  }
  return out;
}

/** Two samples `intervalMs` apart: counters from the second, rates from the difference. */
export async function collectStats(intervalMs: number, previous?: DaemonStatus[]): Promise<{ stats: DaemonStats[]; raw: DaemonStatus[] }> {
  const first = previous ?? (await sample());
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, intervalMs));
  const second = await sample();
  const secs = (Date.now() - t0) / 1000;
  const stats = second.map((b) => {
    const a = first.find((x) => x.id === b.id && x.pid === b.pid) ?? b;
    const dropsAll = Object.fromEntries(DROP_REASONS.map(([n]) => [n, b.total.drops[n] ?? 0]));
    return { ...b, rates: rate(a.total, b.total, secs), dropsAll };
  });
  return { stats, raw: second };
}

export function formatStats(stats: DaemonStats[]): string {
  if (stats.length === 0) return 'no fans are up';
  const lines: string[] = [];
  for (const d of stats) {
    lines.push(`${d.id} (pid ${d.pid}, ${d.workers} worker${d.workers === 1 ? '' : 's'}${d.offload ? `, offload ${d.offload}` : ''}${d.send ? `, send ${d.send}` : ''}): ${d.fans.map((f) => `${f.overlay} over ${f.underlay}, slice ${f.slice} on ${f.bridge}`).join('; ')}`);
    const head = ['worker', 'tx pkts', 'tx bytes', 'rx pkts', 'rx bytes', 'drops', 'restarts'];
    const rows = d.perWorker.map((w, i) => [String(i), w.txPackets, w.txBytes, w.rxPackets, w.rxBytes, w.dropsTotal, w.restarts].map(String));
    const t = d.total;
    rows.push(['total', t.txPackets, t.txBytes, t.rxPackets, t.rxBytes, t.dropsTotal, t.restarts].map(String));
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    for (const r of [head, ...rows]) lines.push(`  ${r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ')}`);
    const r = d.rates;
    lines.push(`  rates: tx ${r.txPps.toFixed(0)} pkt/s ${r.txGbps.toFixed(3)} Gbit/s, rx ${r.rxPps.toFixed(0)} pkt/s ${r.rxGbps.toFixed(3)} Gbit/s`);
    const drops = Object.entries(d.dropsAll).filter(([, v]) => v > 0);
    lines.push(drops.length ? `  drops: ${drops.map(([k, v]) => `${k} ${v}`).join(', ')}` : '  drops: none');
    if (d.send?.startsWith('gso')) lines.push(`  by MAC: ${t.txLinkPackets} of ${t.txPackets} tx packets left as segments of whole frames (TX GSO)`);
    if (d.txGso) lines.push(`  TX GSO ${d.txGso}: ${t.txGsoFrames} super-packets left whole for the kernel to cut`);
    if (d.busyPollUs) lines.push(`  busy poll ${d.busyPollUs} µs: ${t.busyPolls} waits looked again before sleeping, ${t.busyPollHits} of them caught a packet`);
  }
  return lines.join('\n');
}
