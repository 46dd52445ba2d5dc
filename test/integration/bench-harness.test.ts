// The iperf harness: report/ratio code on canned iperf3 JSON, and a tiny real run (veth, 1 s) that checks
// the topology it builds, that results are parsed and reported as measured, and that nothing is left —
// not how fast anything is.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { busyTicks } from '../../bench/cpu-accounting.js';
import { runBench } from '../../bench/iperf.js';
import { parseArgs } from '../../bench/iperf-args.js';
import { ALL_PATHS, QUICK_PATHS } from '../../bench/paths/index.js';
import { parseIperf, ratios, renderTable, summarize, type BenchReport, type Sample } from '../../bench/report.js';
import { renderSvg } from '../../bench/svg.js';
import { LAB_STATE_DIR, listNamespaces } from '../../src/lab/netns.js';

const isRoot = process.getuid?.() === 0;

// trimmed from real iperf3 3.12 -J client output (-P 2 over veth; -u -l 1400 -b 0)
const TCP_JSON = {
  start: { version: 'iperf 3.12' },
  intervals: [],
  end: {
    streams: [],
    sum_sent: { start: 0, end: 1.000472, seconds: 1.000472, bytes: 3035496448, bits_per_second: 24272514956.94, retransmits: 2340, sender: true },
    sum_received: { start: 0, end: 1.000525, seconds: 1.000525, bytes: 3035496448, bits_per_second: 24271229188.68, sender: true },
  },
};
const UDP_JSON = {
  start: { version: 'iperf 3.12' },
  intervals: [],
  end: {
    sum: { start: 0, end: 1.000244, seconds: 1.000244, bytes: 186858000, lost_packets: 1709, packets: 133470, lost_percent: 1.28, sender: true },
    sum_sent: { start: 0, end: 1.000035, seconds: 1.000035, bytes: 186858000, lost_packets: 0, packets: 133470, lost_percent: 0, sender: true },
    sum_received: { start: 0, end: 1.000244, seconds: 1.000244, bytes: 184465400, lost_packets: 1709, packets: 133470, lost_percent: 1.28, sender: false },
  },
};
// iperf3 < 3.11: UDP has only `sum`
const UDP_OLD_JSON = { end: { sum: { seconds: 2, bytes: 2800000, lost_packets: 500, packets: 2000, lost_percent: 25 } } };
const ERROR_JSON = { start: {}, intervals: [], end: {}, error: 'unable to connect to server: Connection refused' };

describe('parsing iperf3 output', () => {
  it('TCP: receiver bytes over receiver seconds', () => {
    const r = parseIperf(JSON.stringify(TCP_JSON), 'tcp4');
    expect(r.bytes).toBe(3035496448);
    expect(r.gbps).toBeCloseTo((3035496448 * 8) / 1.000525 / 1e9, 6);
    expect(r.kpps).toBeUndefined();
  });

  it('UDP: received packets per second and loss', () => {
    const r = parseIperf(UDP_JSON, 'udp1400');
    expect(r.kpps).toBeCloseTo((133470 - 1709) / 1.000244 / 1000, 6);
    expect(r.lossPercent).toBeCloseTo((100 * 1709) / 133470, 6);
    expect(r.bytes).toBe(184465400);
    expect(r.gbps).toBeCloseTo((184465400 * 8) / 1.000244 / 1e9, 6);
    const old = parseIperf(UDP_OLD_JSON, 'udp1400');
    expect(old.kpps).toBeCloseTo(0.75, 6);
    expect(old.bytes).toBe(1500 * 1400);
    expect(old.lossPercent).toBe(25);
  });

  it('errors and garbage are reported, not parsed as zero', () => {
    expect(() => parseIperf(ERROR_JSON, 'tcp1')).toThrow(/Connection refused/);
    expect(() => parseIperf('iperf3: error', 'tcp1')).toThrow(/not JSON/);
    expect(() => parseIperf({ end: {} }, 'tcp1')).toThrow(/sum_received/);
  });
});

describe('summaries, ratios, table, chart', () => {
  const mk = (path: string, test: Sample['test'], gbps: number[], cpuPerRun = 1): Sample[] =>
    gbps.map((g, i) => ({ path, test, round: i + 1, bytes: (g * 1e9) / 8, seconds: 1, gbps: g, cpuSeconds: cpuPerRun, ...(test === 'udp1400' ? { kpps: g * 89.3, lossPercent: i } : {}) }));
  const samples = [
    ...mk('veth', 'tcp1', [20, 22, 18]),
    ...mk('vxlan', 'tcp1', [15, 16, 14]),
    ...mk('userfan', 'tcp1', [4, 5, 6]),
    ...mk('veth', 'udp1400', [2, 3, 2.5]),
    ...mk('userfan', 'udp1400', [1, 1.5, 1.2]),
  ];
  const results = summarize(samples, ['userfan', 'veth', 'vxlan']);

  it('median, min, max, runs and CPU seconds per gigabit', () => {
    const uf = results.find((r) => r.path === 'userfan' && r.test === 'tcp1')!;
    expect(uf.gbps).toEqual({ median: 5, min: 4, max: 6 });
    expect(uf.runs).toBe(3);
    expect(uf.cpuSecondsPerGbit).toBeCloseTo(3 / 15, 9); // 3 CPU-seconds over 15 Gbit
    const ud = results.find((r) => r.path === 'veth' && r.test === 'udp1400')!;
    expect(ud.kpps!.median).toBeCloseTo(2.5 * 89.3, 9);
    expect(ud.lossPercent).toEqual({ median: 1, min: 0, max: 2 });
    expect(results.map((r) => `${r.path}/${r.test}`)).toEqual(['userfan/tcp1', 'userfan/udp1400', 'veth/tcp1', 'veth/udp1400', 'vxlan/tcp1']);
  });

  it('ratios of userfan to every other path, per test', () => {
    const r = ratios(results);
    expect(r['userfan/veth']).toEqual({ tcp1: 0.25, udp1400: 0.48 });
    expect(r['userfan/vxlan']).toEqual({ tcp1: 0.333 });
    expect(Object.keys(r)).toEqual(['userfan/veth', 'userfan/vxlan']);
    expect(ratios(results.filter((x) => x.path !== 'userfan'))).toEqual({});
  });

  it('renders a table and a well-formed SVG', () => {
    const report: BenchReport = {
      machine: { cores: 2, kernel: '6.1.0', unavailable: [{ path: 'kernel-ipip', reason: 'kernel has no ipip' }] },
      results,
      ratios: ratios(results),
    };
    const table = renderTable(report);
    expect(table).toMatch(/\| userfan \| 5\.00 \(4\.00–6\.00\) \|/);
    expect(table).toMatch(/userfan\/vxlan \| 0\.33/);
    expect(table).toMatch(/kernel-ipip\*\*: kernel has no ipip/);
    const svg = renderSvg(report);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect((svg.match(/<rect /g) ?? []).length).toBe(1 + results.length); // background + one bar per result
    expect(svg).not.toMatch(/NaN|undefined/);
  });

  it('parses command-line options', () => {
    const q = parseArgs(['--quick', '--paths', 'veth,vxlan', '--json', '/tmp/x.json']);
    expect(q).toMatchObject({ quick: true, seconds: 1, repeat: 2, paths: ['veth', 'vxlan'], json: '/tmp/x.json' });
    expect(parseArgs([])).toMatchObject({ seconds: 5, repeat: 3, paths: ALL_PATHS.map((p) => p.name) });
    // --quick alone: the paths a user compares, at most 8, every one of them known.
    expect(parseArgs(['--quick']).paths).toEqual([...QUICK_PATHS]);
    expect(QUICK_PATHS.length).toBeLessThanOrEqual(8);
    for (const n of QUICK_PATHS) expect(ALL_PATHS.map((p) => p.name)).toContain(n);
    expect(() => parseArgs(['--paths', 'carrier-pigeon'])).toThrow(/unknown path/);
    expect(() => parseArgs(['--repeat', '0'])).toThrow(/--repeat/);
    expect(parseArgs(['--kernel-ipip', 'uml']).kernelIpip).toBe('uml');
    expect(parseArgs(['--wait-quiet', '30']).waitQuiet).toBe(30);
    expect(() => parseArgs(['--kernel-ipip', 'qemu'])).toThrow(/only "uml"/);
  });

  it('busy CPU ticks from /proc/stat exclude idle, iowait and steal', () => {
    expect(busyTicks('cpu  100 5 50 1000 20 3 7 40 0 0\ncpu0 1 2 3\n')).toBe(165);
  });
});

describe.skipIf(!isRoot)('a tiny real run', () => {
  it('veth, 1 s: builds the 2-host container topology, parses iperf3, leaves nothing behind', async () => {
    const prefixes: string[] = [];
    const lines: string[] = [];
    const o = parseArgs(['--paths', 'veth', '--repeat', '1', '--seconds', '1']);
    o.log = (l) => lines.push(l);
    const stateFiles: unknown[] = [];
    o.onSetup = async (path, topo, inst) => {
      prefixes.push(topo.prefix);
      // While the lab is up, its state file names this process (cleanupOrphans reads it after a crash).
      const f = `${LAB_STATE_DIR}/${topo.prefix}`;
      stateFiles.push(existsSync(f) && JSON.parse(readFileSync(f, 'utf8')).pid);
      const [a, b] = topo.hosts;
      expect([a.underlay, b.underlay]).toEqual(['198.18.0.28', '198.18.0.27']);
      expect(inst.client).toMatchObject({ address: '250.0.28.3', gateway: '250.0.28.1', mtu: 1500 });
      expect(inst.server).toMatchObject({ address: '250.0.27.3', gateway: '250.0.27.1' });
      expect(inst.client.host).toBe(a);
      expect(inst.server.host).toBe(b);
      // underlay MTU 1500, forwarding on in hosts
      const link = JSON.parse((await topo.exec(a, ['ip', '-j', 'link', 'show', 'dev', a.underlayIf])).stdout);
      expect(link[0].mtu).toBe(1500);
      expect((await topo.exec(b, ['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim()).toBe('1');
    };
    const report = await runBench(o);
    expect(prefixes.length).toBe(1);
    expect(report.machine.cores).toBeGreaterThan(0);
    expect(report.machine.kernel).toMatch(/\d+\.\d+/);
    expect(report.machine.unavailable).toEqual([]);
    expect(report.failures).toEqual([]);
    expect(report.results.map((r) => r.test)).toEqual(['tcp1', 'tcp4', 'udp1400']);
    for (const r of report.results) {
      expect(r.path).toBe('veth');
      expect(r.runs).toBe(1);
      expect(r.gbps.median).toBeGreaterThan(0);
      expect(r.gbps.min).toBe(r.gbps.median);
      expect(r.cpuSecondsPerGbit).toBeGreaterThan(0);
    }
    // The report says what each run measured: its figures are those of the run's own log line (which
    // rounds them: Gbit/s to 0.01, kpps to 1, loss to 0.1%), and a loss is a share, 0-100%.
    const runLines = lines.filter((l) => /^\[\d\/3\] round 1\/1 veth/.test(l));
    expect(runLines).toHaveLength(3);
    for (const r of report.results) {
      const line = runLines.find((l) => new RegExp(`veth\\s+${r.test}\\s`).test(l))!;
      const logged = /\s([\d.]+) Gbit\/s(?:\s+(\d+) kpps\s+loss ([\d.]+)%)?/.exec(line);
      expect(logged, line).not.toBe(null);
      expect(Math.abs(r.gbps.median - Number(logged![1])), line).toBeLessThanOrEqual(0.0051);
      if (r.test === 'udp1400') {
        expect(Math.abs(r.kpps!.median - Number(logged![2])), line).toBeLessThanOrEqual(0.51);
        expect(Math.abs(r.lossPercent!.median - Number(logged![3])), line).toBeLessThanOrEqual(0.051);
      }
    }
    const udp = report.results.find((r) => r.test === 'udp1400')!;
    expect(udp.kpps!.median).toBeGreaterThan(0);
    expect(udp.lossPercent!.median).toBeGreaterThanOrEqual(0);
    expect(udp.lossPercent!.median).toBeLessThanOrEqual(100);
    expect(report.ratios).toEqual({});
    // Other processes' share of the machine during the runs: a share of it, 0-100%.
    expect(report.machine.othersBusyPercent).toBeGreaterThanOrEqual(0);
    expect(report.machine.othersBusyPercent).toBeLessThanOrEqual(100);
    // Nothing left: the run's namespaces, and its state file (which existed while the lab was up).
    expect(stateFiles).toEqual([process.pid]);
    const left = (await listNamespaces()).filter((n) => prefixes.some((p) => n.startsWith(p + '-')));
    expect(left).toEqual([]);
    expect(prefixes.filter((p) => existsSync(`${LAB_STATE_DIR}/${p}`))).toEqual([]);
    const owner = (f: string) => {
      try {
        return JSON.parse(readFileSync(`${LAB_STATE_DIR}/${f}`, 'utf8')).pid;
      } catch {
        return undefined; // another run's lab, gone meanwhile
      }
    };
    const mine = readdirSync(LAB_STATE_DIR).filter((f) => owner(f) === process.pid);
    expect(mine).toEqual([]);
  });
});
