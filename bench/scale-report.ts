// The scale harness's output (bench/scale.ts): a text table, Markdown, and a hand-written SVG plot of how
// loss, round trips, memory, idle CPU and start-up time grow with the number of hosts.
import type { ScaleReport } from './scale.js';
import type { ScaleResult } from './scale-run.js';

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');

function rows(results: readonly ScaleResult[]): string[][] {
  return results.map((r) => {
    const ov = r.rounds.filter((x) => x.target === 'overlay');
    const ul = r.rounds.filter((x) => x.target === 'underlay');
    const first = ov.find((x) => x.round === 1);
    const steady = ov.filter((x) => x.round > 1);
    const st = steady[0];
    const drops = Object.entries(r.userfan.drops).map(([k, v]) => `${k} ${v}`).join(', ') || '0';
    return [
      String(r.hosts),
      ov.length ? `${ov.map((x) => x.lost).join(' + ')} of ${ov.map((x) => x.sent).join(' + ')}` : '–',
      ul.length ? `${ul.map((x) => x.lost).join(' + ')} of ${ul.map((x) => x.sent).join(' + ')}` : '–',
      first ? `${f(first.rtt.p50, 2)} / ${f(first.rtt.p99, 2)}` : '–',
      st ? `${f(st.rtt.p50, 2)} / ${f(st.rtt.p99, 2)}` : '–',
      `${f(r.upS)} (${f(r.upEachS.p50, 2)})`,
      `${f(r.rssMiB.p50)} / ${f(r.rssMiB.max)} (${f(r.rssParts.pss ?? NaN)})`,
      `${f(r.idleCpuPct.mean, 2)} / ${f(r.idleCpuAfterPingsPct.mean, 2)} (max ${f(r.idleCpuAfterPingsPct.max, 2)})`,
      `${r.kernel.tableFulls} / ${r.kernel.overflowLines}`,
      drops,
    ];
  });
}

const HEAD = [
  'hosts', 'lost, overlay', 'lost, underlay', 'first ms p50/p99', 'steady ms p50/p99', 'up s (each p50)', 'RSS MiB p50/max (PSS p50)',
  'idle CPU % (after pings)', 'table_fulls/overflows', 'userfan drops',
];

export function formatTable(results: readonly ScaleResult[]): string {
  const body = rows(results);
  const w = HEAD.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  return [HEAD, ...body].map((cols) => cols.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd()).join('\n');
}

export function markdown(report: ScaleReport): string {
  const m = report.machine;
  const lines = [
    `\`${report.command}\` — ${report.date.slice(0, 10)}, ${m.cores} cores, ${m.memGiB} GiB, Linux ${m.kernel}, Node ${m.node}`,
    '',
    `| ${HEAD.join(' | ')} |`,
    `| ${HEAD.map(() => '---').join(' | ')} |`,
    ...rows(report.results).map((r) => `| ${r.join(' | ')} |`),
  ];
  for (const s of report.skipped) lines.push('', `${s.hosts} hosts skipped: ${s.why}.`);
  return lines.join('\n') + '\n';
}

interface Series {
  name: string;
  color: string;
  dash?: boolean;
  pick: (r: ScaleResult) => number;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceMax(x: number): number {
  if (!(x > 0)) return 1;
  const e = 10 ** Math.floor(Math.log10(x));
  for (const k of [1, 2, 2.5, 5, 10]) if (k * e >= x) return k * e;
  return 10 * e;
}

/** One panel: hosts (log2) across, a linear axis up, a line per series. */
function panel(x0: number, y0: number, w: number, h: number, title: string, unit: string, results: readonly ScaleResult[], series: Series[]): string[] {
  const out = [`<text x="${x0}" y="${y0 - 8}" font-weight="bold">${esc(title)}</text>`];
  const ns = results.map((r) => r.hosts);
  const lo = Math.log2(Math.min(...ns));
  const hi = Math.max(lo + 1, Math.log2(Math.max(...ns)));
  const vals = series.flatMap((s) => results.map(s.pick)).filter(Number.isFinite);
  const top = niceMax(Math.max(0, ...vals));
  const px = (n: number) => x0 + ((Math.log2(n) - lo) / (hi - lo)) * w;
  const py = (v: number) => y0 + h - (v / top) * h;
  out.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#ccc"/>`);
  for (const k of [0, 0.5, 1]) out.push(`<text x="${x0 - 4}" y="${py(top * k) + 4}" text-anchor="end" font-size="10">${+(top * k).toPrecision(3)}</text>`);
  out.push(`<text x="${x0 - 4}" y="${y0 - 8}" text-anchor="end" font-size="10" fill="#555">${esc(unit)}</text>`);
  for (const n of ns) out.push(`<text x="${px(n)}" y="${y0 + h + 13}" text-anchor="middle" font-size="10">${n}</text>`);
  series.forEach((s, i) => {
    const pts = results.map((r) => [px(r.hosts), py(s.pick(r))]).filter(([, y]) => Number.isFinite(y));
    if (!pts.length) return;
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ' stroke-dasharray="5,3"' : ''} points="${pts.map((p) => p.map((v) => v.toFixed(1)).join(',')).join(' ')}"/>`);
    for (const [x, y] of pts) out.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3" fill="${s.color}"/>`);
    out.push(`<text x="${x0 + 6}" y="${y0 + 14 + 13 * i}" font-size="10" fill="${s.color}">${esc(s.name)}</text>`);
  });
  return out;
}

const round = (r: ScaleResult, n: number) => r.rounds.find((x) => x.target === 'overlay' && x.round === n);

export function renderScaleSvg(report: ScaleReport): string {
  const res = report.results;
  const W = 760;
  const pw = 290;
  const ph = 130;
  const body = [
    ...panel(70, 70, pw, ph, 'Pings lost, all pairs', 'pings', res, [
      { name: 'round 1', color: '#e95420', pick: (r) => round(r, 1)?.lost ?? NaN },
      { name: 'round 2', color: '#7a7a7a', dash: true, pick: (r) => round(r, 2)?.lost ?? NaN },
    ]),
    ...panel(450, 70, pw, ph, 'Round trip, ms', 'ms', res, [
      { name: 'first packet p99', color: '#e95420', pick: (r) => round(r, 1)?.rtt.p99 ?? NaN },
      { name: 'first packet p50', color: '#f29879', dash: true, pick: (r) => round(r, 1)?.rtt.p50 ?? NaN },
      { name: 'steady p99', color: '#4a7fb5', pick: (r) => round(r, 2)?.rtt.p99 ?? NaN },
      { name: 'steady p50', color: '#8fb3d9', dash: true, pick: (r) => round(r, 2)?.rtt.p50 ?? NaN },
    ]),
    ...panel(70, 260, pw, ph, 'RSS per daemon', 'MiB', res, [
      { name: 'max', color: '#e95420', pick: (r) => r.rssMiB.max },
      { name: 'p50', color: '#f29879', dash: true, pick: (r) => r.rssMiB.p50 },
    ]),
    ...panel(450, 260, pw, ph, 'Idle CPU per daemon; start-up', '% / s', res, [
      { name: 'idle CPU %, mean, after pings', color: '#5b9e5b', pick: (r) => r.idleCpuAfterPingsPct.mean },
      { name: 'seconds to bring all up', color: '#8e6bb8', dash: true, pick: (r) => r.upS },
    ]),
  ];
  const m = report.machine;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="430" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="20" y="22" font-size="15" font-weight="bold">userfan: N hosts in one fan, 1 worker each (hosts across, log scale)</text>`,
    `<text x="20" y="40" font-size="11" fill="#555">${esc(`${report.command} — ${report.date.slice(0, 10)}, ${m.cores} cores, ${m.memGiB} GiB, Linux ${m.kernel}, Node ${m.node}`)}</text>`,
    ...body,
    `<text x="20" y="420" font-size="10" fill="#555">ping -c1 -W1 between every ordered pair of hosts' fan bridges; round 1 is each pair's first packet (ARP both ways included).</text>`,
    '</svg>',
  ].join('\n') + '\n';
}
