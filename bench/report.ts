// Parsing iperf3 JSON, summarising runs, ratios and the text table. No I/O here (unit-testable).

export type TestName = 'tcp1' | 'tcp4' | 'udp1400';
export const TESTS: TestName[] = ['tcp1', 'tcp4', 'udp1400'];

/** iperf3 client arguments per test (after `-c SERVER -t S -J --connect-timeout MS`). */
export const TEST_ARGS: Record<TestName, string[]> = {
  tcp1: [],
  tcp4: ['-P', '4'],
  // -b 0: as fast as the sender can go; we report what arrives
  udp1400: ['-u', '-l', '1400', '-b', '0'],
};

/** One iperf3 run as measured at the receiver. */
export interface Sample {
  path: string;
  test: TestName;
  round: number;
  /** Received bytes and the receiver's measurement interval. */
  bytes: number;
  seconds: number;
  gbps: number;
  /** UDP only: received packets per second (thousands) and loss. */
  kpps?: number;
  lossPercent?: number;
  /** Machine-wide busy CPU seconds (from /proc/stat) while the client ran. */
  cpuSeconds: number;
  /** CPU seconds used by processes outside the lab's namespaces meanwhile (other work on the machine). */
  othersCpuSeconds?: number;
  wallSeconds?: number;
}

export interface Stat {
  median: number;
  min: number;
  max: number;
}

export interface Result {
  path: string;
  test: TestName;
  gbps: Stat;
  kpps?: Stat;
  lossPercent?: Stat;
  /** Busy CPU seconds (whole machine, all runs) divided by gigabits received (all runs). */
  cpuSecondsPerGbit: number;
  runs: number;
}

export interface Machine {
  cores: number;
  kernel: string;
  unavailable: { path: string; reason: string }[];
  cpu?: string;
  node?: string;
  iperf3?: string;
  date?: string;
  seconds?: number;
  repeat?: number;
  quick?: boolean;
  /** Busy share of all cores during one idle second before the first run (others using the machine). */
  backgroundBusyPercent?: number;
  /** CPU share of all cores that processes outside the lab used during the runs (0 on a quiet machine). */
  othersBusyPercent?: number;
}

export interface Failure {
  path: string;
  test?: TestName;
  round: number;
  error: string;
}

export interface BenchReport {
  machine: Machine;
  results: Result[];
  ratios: Record<string, Partial<Record<TestName, number>>>;
  failures?: Failure[];
}

interface IperfSum {
  seconds?: number;
  bytes?: number;
  bits_per_second?: number;
  packets?: number;
  lost_packets?: number;
  lost_percent?: number;
}

/** Parse iperf3 -J client output (text or object) for `test` into the receiver-side figures. */
export function parseIperf(
  json: string | unknown,
  test: TestName,
): Pick<Sample, 'bytes' | 'seconds' | 'gbps' | 'kpps' | 'lossPercent'> {
  let j: { error?: string; end?: { sum_received?: IperfSum; sum?: IperfSum; sum_sent?: IperfSum } };
  try {
    j = (typeof json === 'string' ? JSON.parse(json) : json) as typeof j;
  } catch {
    throw new Error(`iperf3 output is not JSON: ${String(json).slice(0, 200)}`);
  }
  if (!j || typeof j !== 'object') throw new Error('iperf3 output is not an object');
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  const end = j.end;
  if (!end) throw new Error('iperf3 output has no "end" section');
  if (test === 'udp1400') {
    // iperf3 ≥ 3.11 has sum_received for UDP; older ones only `sum` (sender bytes, receiver loss)
    const r = end.sum_received ?? end.sum;
    if (!r || r.packets === undefined || r.lost_packets === undefined || !r.seconds) {
      throw new Error('iperf3 UDP output lacks packets/lost_packets/seconds');
    }
    const received = Math.max(0, r.packets - r.lost_packets);
    const bytes = end.sum_received ? (r.bytes ?? received * 1400) : received * 1400;
    const seconds = r.seconds;
    return {
      bytes,
      seconds,
      gbps: (bytes * 8) / seconds / 1e9,
      kpps: received / seconds / 1000,
      lossPercent: r.packets > 0 ? (100 * r.lost_packets) / r.packets : 0,
    };
  }
  const r = end.sum_received;
  if (!r || r.bytes === undefined || !r.seconds) throw new Error('iperf3 TCP output lacks end.sum_received');
  return { bytes: r.bytes, seconds: r.seconds, gbps: (r.bytes * 8) / r.seconds / 1e9 };
}

export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function stat(xs: number[]): Stat {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

/** One Result per (path, test) that has samples, in the order paths and tests first appear. */
export function summarize(samples: Sample[], pathOrder?: string[]): Result[] {
  const paths = pathOrder ?? [...new Set(samples.map((s) => s.path))];
  const out: Result[] = [];
  for (const path of paths) {
    for (const test of TESTS) {
      const ss = samples.filter((s) => s.path === path && s.test === test);
      if (!ss.length) continue;
      const gbits = ss.reduce((a, s) => a + (s.bytes * 8) / 1e9, 0);
      const cpu = ss.reduce((a, s) => a + s.cpuSeconds, 0);
      const r: Result = {
        path,
        test,
        gbps: stat(ss.map((s) => s.gbps)),
        cpuSecondsPerGbit: gbits > 0 ? cpu / gbits : Infinity,
        runs: ss.length,
      };
      if (test === 'udp1400') {
        r.kpps = stat(ss.map((s) => s.kpps ?? 0));
        r.lossPercent = stat(ss.map((s) => s.lossPercent ?? 0));
      }
      out.push(r);
    }
  }
  return out;
}

/** `userfan/X` (and `userfan-1w/X`) → test → ratio of median Gbit/s, for every other path X. */
export function ratios(results: Result[], numerators = ['userfan', 'userfan-1w']): BenchReport['ratios'] {
  const out: BenchReport['ratios'] = {};
  const paths = [...new Set(results.map((r) => r.path))];
  for (const num of numerators) {
    if (!results.some((r) => r.path === num)) continue;
    for (const den of paths) {
      if (den === num) continue;
      if (numerators.includes(den) && numerators.indexOf(den) < numerators.indexOf(num)) continue;
      const row: Partial<Record<TestName, number>> = {};
      for (const test of TESTS) {
        const n = results.find((r) => r.path === num && r.test === test);
        const d = results.find((r) => r.path === den && r.test === test);
        if (n && d && d.gbps.median > 0) row[test] = round(n.gbps.median / d.gbps.median, 3);
      }
      if (Object.keys(row).length) out[`${num}/${den}`] = row;
    }
  }
  return out;
}

export function round(x: number, digits: number): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function fmt(x: number | undefined, digits = 2): string {
  if (x === undefined || !Number.isFinite(x)) return '–';
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(Math.min(digits, 1));
  return x.toFixed(digits);
}

function range(s: Stat, digits = 2): string {
  return `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}

/** Markdown tables: throughput per path and test, CPU cost, ratios, unavailable paths. */
export function renderTable(report: BenchReport): string {
  const lines: string[] = [];
  const paths = [...new Set(report.results.map((r) => r.path))];
  const get = (p: string, t: TestName) => report.results.find((r) => r.path === p && r.test === t);
  lines.push(
    '| path | TCP 1 stream, Gbit/s | TCP 4 streams, Gbit/s | UDP 1400 B received, kpps | UDP loss % | CPU s/Gbit (tcp1 / tcp4 / udp) | runs |',
  );
  lines.push('| --- | --- | --- | --- | --- | --- | --- |');
  for (const p of paths) {
    const t1 = get(p, 'tcp1');
    const t4 = get(p, 'tcp4');
    const u = get(p, 'udp1400');
    const cpu = [t1, t4, u].map((r) => fmt(r?.cpuSecondsPerGbit, 2)).join(' / ');
    const runs = Math.max(t1?.runs ?? 0, t4?.runs ?? 0, u?.runs ?? 0);
    lines.push(
      `| ${p} | ${t1 ? range(t1.gbps) : '–'} | ${t4 ? range(t4.gbps) : '–'} | ${u?.kpps ? range(u.kpps, 0) : '–'} | ${u?.lossPercent ? fmt(u.lossPercent.median, 1) : '–'} | ${cpu} | ${runs} |`,
    );
  }
  const ratioKeys = Object.keys(report.ratios);
  if (ratioKeys.length) {
    lines.push('', '| ratio (medians) | tcp1 | tcp4 | udp1400 |', '| --- | --- | --- | --- |');
    for (const k of ratioKeys) {
      const r = report.ratios[k];
      lines.push(`| ${k} | ${fmt(r.tcp1)} | ${fmt(r.tcp4)} | ${fmt(r.udp1400)} |`);
    }
  }
  if (report.machine.unavailable.length) {
    lines.push('');
    for (const u of report.machine.unavailable) lines.push(`- not measured: **${u.path}**: ${u.reason}`);
  }
  return lines.join('\n');
}

/** One line describing the machine. */
export function machineLine(m: Machine): string {
  const bits = [`${m.cores} cores`];
  if (m.cpu) bits.push(m.cpu);
  bits.push(`Linux ${m.kernel}`);
  if (m.iperf3) bits.push(m.iperf3);
  if (m.node) bits.push(`Node ${m.node}`);
  if (m.seconds) bits.push(`${m.seconds} s runs × ${m.repeat ?? '?'} rounds, interleaved`);
  if (m.othersBusyPercent !== undefined) bits.push(`other processes ${m.othersBusyPercent}% busy during runs`);
  else if (m.backgroundBusyPercent !== undefined) bits.push(`${m.backgroundBusyPercent}% busy before start`);
  if (m.date) bits.push(m.date);
  return bits.join(', ');
}
