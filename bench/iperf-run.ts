// One iperf3 run between two containers of the lab, with the CPU it cost the machine and what other work
// took meanwhile. Bounded everywhere: the server serves one test and exits (-1), both sides run under
// timeout(1).
import type { Container, FanTopology } from '../src/lab/topology.js';
import { busyTicks, clockTicks, labNetns, othersDelta, othersTicks } from './cpu-accounting.js';
import { TEST_ARGS, parseIperf, type Sample, type TestName } from './report.js';

export const IPERF_PORT = 5201;

/** Polls until `port` listens in container `c`; fails at once when the server exits first. */
export async function waitListening(topo: FanTopology, c: Container, port: number, ms: number, server: { running: boolean; tail(): string }): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const r = await topo.exec(c, ['ss', '-Hltn', `sport = :${port}`], { allowFail: true });
    if (r.stdout.trim()) return;
    if (!server.running) throw new Error(`iperf3 server exited before listening\n${server.tail()}`);
    if (Date.now() > until) throw new Error(`iperf3 server not listening after ${ms} ms\n${server.tail()}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** One iperf3 run client → server; the server serves one test and exits (-1), everything bounded by timeout. */
export async function runIperf(
  topo: FanTopology,
  client: Container,
  server: Container,
  test: TestName,
  seconds: number,
): Promise<Omit<Sample, 'path' | 'round'>> {
  const bound = seconds + 20;
  const srv = topo.spawn(server, ['timeout', String(bound + 10), 'iperf3', '-s', '-1', '-B', server.address, '-p', String(IPERF_PORT)]);
  try {
    await waitListening(topo, server, IPERF_PORT, 5000, srv);
    const ns = labNetns(topo.lab.namespaces);
    const o0 = othersTicks(ns);
    const w0 = Date.now();
    const t0 = busyTicks();
    const r = await topo.exec(
      client,
      ['timeout', String(bound), 'iperf3', '-c', server.address, '-p', String(IPERF_PORT), '-t', String(seconds), '-J', '--connect-timeout', '3000', ...TEST_ARGS[test]],
      { allowFail: true, timeoutMs: (bound + 5) * 1000 },
    );
    const t1 = busyTicks();
    const wallSeconds = (Date.now() - w0) / 1000;
    const othersCpuSeconds = othersDelta(o0, othersTicks(ns)) / clockTicks();
    let parsed;
    try {
      parsed = parseIperf(r.stdout, test);
    } catch (e) {
      const why = r.code === 124 ? 'timed out' : `exit ${r.code}`;
      throw new Error(`iperf3 ${test} (${why}): ${(e as Error).message}${r.stderr.trim() ? `\n${r.stderr.trim().slice(-500)}` : ''}`);
    }
    return { test, ...parsed, cpuSeconds: (t1 - t0) / clockTicks(), othersCpuSeconds, wallSeconds };
  } finally {
    await srv.wait(3000); // -1: it exits after the test; if not, SIGKILL
  }
}

/** A run's log line after its tag: throughput, UDP rate and loss, CPU cost, and others' CPU when notable. */
export function sampleLine(s: Omit<Sample, 'path' | 'round'>): string {
  const extra = s.kpps !== undefined ? `  ${s.kpps.toFixed(0).padStart(4)} kpps  loss ${s.lossPercent!.toFixed(1)}%` : '';
  const cpg = s.bytes > 0 ? (s.cpuSeconds / ((s.bytes * 8) / 1e9)).toFixed(2) : '–';
  const others = s.othersCpuSeconds && s.othersCpuSeconds >= 0.05 ? `  [others used ${s.othersCpuSeconds.toFixed(2)} CPU-s]` : '';
  return `${s.gbps.toFixed(2).padStart(6)} Gbit/s${extra}  cpu ${s.cpuSeconds.toFixed(2)} s (${cpg} s/Gbit)${others}`;
}
