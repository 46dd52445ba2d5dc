// A hand-written SVG bar chart of a bench report: one panel per test, one horizontal bar per path
// (median), a whisker from min to max, the value at the bar's end. userfan paths are highlighted.
import { machineLine, type BenchReport, type Stat, type TestName } from './report.js';

const PANELS: { test: TestName; title: string; unit: string; pick: 'gbps' | 'kpps' }[] = [
  { test: 'tcp1', title: 'TCP, 1 stream', unit: 'Gbit/s', pick: 'gbps' },
  { test: 'tcp4', title: 'TCP, 4 streams', unit: 'Gbit/s', pick: 'gbps' },
  { test: 'udp1400', title: 'UDP, 1400-byte datagrams received', unit: 'kpps', pick: 'kpps' },
];

const COLORS: Record<string, string> = {
  userfan: '#e95420',
  'userfan-1w': '#f29879',
  veth: '#7a7a7a',
  vxlan: '#4a7fb5',
  'kernel-ipip': '#5b9e5b',
  openvpn: '#8e6bb8',
  socat: '#b8956b',
};

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function num(x: number): string {
  if (!Number.isFinite(x)) return '–';
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** A "nice" axis maximum ≥ x (1, 2, 2.5, 5 × 10^k). */
function niceMax(x: number): number {
  if (!(x > 0)) return 1;
  const e = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * e >= x) return m * e;
  return 10 * e;
}

export function renderSvg(report: BenchReport): string {
  const paths = [...new Set(report.results.map((r) => r.path))];
  const width = 760;
  const labelW = 110;
  const plotW = width - labelW - 90;
  const barH = 18;
  const gap = 6;
  const panelTitleH = 26;
  const axisH = 22;
  const top = 66;
  const out: string[] = [];
  let y = top;
  const body: string[] = [];

  for (const panel of PANELS) {
    const rows = paths
      .map((p) => {
        const r = report.results.find((x) => x.path === p && x.test === panel.test);
        const s: Stat | undefined = r ? (panel.pick === 'kpps' ? r.kpps : r.gbps) : undefined;
        return { path: p, s };
      })
      .filter((r): r is { path: string; s: Stat } => !!r.s);
    if (!rows.length) continue;
    const max = niceMax(Math.max(...rows.map((r) => r.s.max)));
    const sx = (v: number) => labelW + (Math.max(0, v) / max) * plotW;
    body.push(`<text x="${labelW}" y="${y + 17}" class="t">${esc(panel.title)} <tspan class="u">(${panel.unit}, median; whisker min–max)</tspan></text>`);
    y += panelTitleH;
    const plotTop = y;
    const plotH = rows.length * (barH + gap);
    // grid
    for (let i = 0; i <= 5; i++) {
      const v = (max * i) / 5;
      const x = sx(v);
      body.push(`<line x1="${x.toFixed(1)}" y1="${plotTop - 2}" x2="${x.toFixed(1)}" y2="${plotTop + plotH}" class="g"/>`);
      body.push(`<text x="${x.toFixed(1)}" y="${plotTop + plotH + 14}" class="a">${String(Number(v.toPrecision(3)))}</text>`);
    }
    for (const [i, r] of rows.entries()) {
      const by = plotTop + i * (barH + gap);
      const color = COLORS[r.path] ?? '#999';
      const x0 = sx(0);
      const x1 = sx(r.s.median);
      const bold = r.path.startsWith('userfan') ? ' b' : '';
      body.push(`<text x="${labelW - 8}" y="${by + barH - 5}" class="l${bold}">${esc(r.path)}</text>`);
      body.push(`<rect x="${x0}" y="${by}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${barH}" fill="${color}"><title>${esc(`${r.path} ${panel.test}: median ${num(r.s.median)}, min ${num(r.s.min)}, max ${num(r.s.max)} ${panel.unit}`)}</title></rect>`);
      const wy = by + barH / 2;
      body.push(`<line x1="${sx(r.s.min).toFixed(1)}" y1="${wy}" x2="${sx(r.s.max).toFixed(1)}" y2="${wy}" class="w"/>`);
      for (const v of [r.s.min, r.s.max]) body.push(`<line x1="${sx(v).toFixed(1)}" y1="${wy - 4}" x2="${sx(v).toFixed(1)}" y2="${wy + 4}" class="w"/>`);
      body.push(`<text x="${(Math.max(x1, sx(r.s.max)) + 6).toFixed(1)}" y="${by + barH - 5}" class="v${bold}">${num(r.s.median)}</text>`);
    }
    y = plotTop + plotH + axisH + 8;
  }
  const unavailable = report.machine.unavailable;
  for (const u of unavailable) {
    const note = `not measured: ${u.path}: ${u.reason}`;
    body.push(`<text x="${labelW}" y="${y + 12}" class="n">${esc(note.length > 105 ? note.slice(0, 104) + '…' : note)}<title>${esc(note)}</title></text>`);
    y += 16;
  }
  const height = y + 12;
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`);
  out.push(`<style>
  .h{font-size:16px;font-weight:bold;fill:#222}
  .m{font-size:11px;fill:#555}
  .t{font-size:13px;font-weight:bold;fill:#222}
  .u{font-weight:normal;fill:#666;font-size:11px}
  .l{font-size:12px;fill:#222;text-anchor:end}
  .v{font-size:12px;fill:#222}
  .b{font-weight:bold}
  .a{font-size:10px;fill:#777;text-anchor:middle}
  .n{font-size:11px;fill:#777}
  .g{stroke:#e4e4e4;stroke-width:1}
  .w{stroke:#222;stroke-width:1.2}
</style>`);
  out.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  out.push(`<text x="12" y="22" class="h">Container to container across two hosts (network namespaces), iperf3</text>`);
  // the machine line, wrapped at commas to fit the width
  const mline = machineLine(report.machine).split(', ');
  const wrapped: string[] = [''];
  for (const part of mline) {
    const cur = wrapped[wrapped.length - 1];
    if (cur && (cur + ', ' + part).length > 120) wrapped.push(part);
    else wrapped[wrapped.length - 1] = cur ? `${cur}, ${part}` : part;
  }
  wrapped.forEach((w, i) => out.push(`<text x="12" y="${40 + i * 14}" class="m">${esc(w)}</text>`));
  out.push(...body);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
