// npm run bench -- [--quick] [--json FILE] [--svg FILE] [--markdown FILE] [--paths a,b] [--tests t1,t2]
//                  [--repeat N] [--seconds S] [--workers N]
//
// The two-host container-to-container topology of the demo, one data path at a time, iperf3 from a
// container on host A to a container on host B. Every round builds each path afresh in its own
// namespaces (so exactly one data path exists at any moment), runs tcp1, tcp4 and udp1400 on it and
// tears it down; rounds interleave the paths A B C … A B C …. CPU cost is machine-wide busy time from
// /proc/stat while the iperf3 client runs, divided by the gigabits received.
//
// The command line: iperf-args.ts; one iperf3 run: iperf-run.ts; CPU accounting: cpu-accounting.ts; tables
// and chart: report.ts, svg.ts.
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { Lab, cleanupOrphans, run } from '../src/lab/netns.js';
import { createFanTopology, type FanTopology } from '../src/lab/topology.js';
import { busyTicks, clockTicks, waitQuiet } from './cpu-accounting.js';
import { parseArgs, type BenchOptions } from './iperf-args.js';
import { runIperf, sampleLine } from './iperf-run.js';
import { PathUnavailable, pathByName, type DataPath, type PathEnv, type PathInstance } from './paths/index.js';
import { machineLine, ratios, renderTable, round, summarize, type BenchReport, type Failure, type Machine, type Sample } from './report.js';
import { renderSvg } from './svg.js';
import { formatKernelIpipUml, measureKernelIpipUml, type KernelIpipUmlResult } from './paths/kernel-ipip-uml.js';

/** The lab was torn down under us (SIGINT/SIGTERM): stop quietly, the signal handler exits. */
class Interrupted extends Error {
  constructor() {
    super('interrupted');
  }
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

async function machineInfo(o: BenchOptions): Promise<Machine> {
  const cpus = os.cpus();
  const iperf = await run(['iperf3', '--version'], { allowFail: true });
  return {
    cores: cpus.length,
    kernel: os.release(),
    unavailable: [],
    cpu: cpus[0]?.model?.replace(/\s+/g, ' ').trim(),
    node: process.versions.node,
    iperf3: iperf.stdout.split('\n')[0]?.trim(),
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    seconds: o.seconds,
    repeat: o.repeat,
    quick: o.quick,
  };
}

/** Ask each path whether it can run here, in a scratch namespace. */
async function probePaths(paths: DataPath[]): Promise<Map<string, string>> {
  const unavailable = new Map<string, string>();
  const lab = await Lab.create();
  try {
    const ns = await lab.addNamespace('probe');
    for (const p of paths) {
      const reason = await p
        .probe({ ns, exec: (n, argv) => run(argv, { ns: n, allowFail: true }) })
        .catch((e: Error) => `probe failed: ${e.message}`);
      if (reason) unavailable.set(p.name, reason);
    }
  } finally {
    await lab.destroy();
  }
  return unavailable;
}

/** What the rounds have found so far. */
interface Progress {
  machine: Machine;
  /** Paths still run in the next rounds. */
  active: DataPath[];
  unavailable: Map<string, string>;
  samples: Sample[];
  failures: Failure[];
  /** Runs done or skipped, of total, for the [n/total] tags. */
  n: number;
  total: number;
  infoShown: Set<string>;
  /** Paths with at least one measured run: a later setup failure is a failure, not unavailability. */
  succeeded: Set<string>;
}

/**
 * A path whose setup failed: one that never worked is said once and dropped from later rounds (its runs
 * count as done); one that worked before counts a failure for this round.
 */
function setupFailed(o: BenchOptions, st: Progress, path: DataPath, roundNo: number, e: Error): void {
  const unavailable = e instanceof PathUnavailable;
  const why = unavailable ? e.message : `setup failed: ${e.message.split('\n')[0]}`;
  if (unavailable || !st.succeeded.has(path.name)) {
    st.unavailable.set(path.name, why);
    st.active = st.active.filter((p) => p !== path);
    o.log(`${path.name}: not available: ${why}`);
    if (!unavailable) o.log(e.message);
    st.n += o.tests.length * (o.repeat - roundNo + 1);
  } else {
    st.failures.push({ path: path.name, round: roundNo, error: why });
    o.log(`${path.name}: round ${roundNo}: ${why}`);
    st.n += o.tests.length;
  }
}

/** Every test on a path that is set up: a failed run is a failure of that run, not of the round. */
async function runTests(o: BenchOptions, st: Progress, topo: FanTopology, inst: PathInstance, path: DataPath, roundNo: number): Promise<void> {
  for (const test of o.tests) {
    st.n++;
    const tag = `[${String(st.n).padStart(String(st.total).length)}/${st.total}] round ${roundNo}/${o.repeat} ${pad(path.name, 12)} ${pad(test, 8)}`;
    try {
      if (o.waitQuiet) {
        const pct = await waitQuiet(topo.lab.namespaces, o.waitQuiet * 1000, st.machine.cores, 15);
        if (pct >= 15) o.log(`${tag} machine still ${pct.toFixed(0)}% busy after waiting ${o.waitQuiet} s; running anyway`);
      }
      const s = await runIperf(topo, inst.client, inst.server, test, o.seconds);
      st.samples.push({ ...s, path: path.name, round: roundNo });
      st.succeeded.add(path.name);
      o.log(`${tag} ${sampleLine(s)}`);
    } catch (e) {
      if (topo.lab.isDestroyed) throw new Interrupted();
      const msg = (e as Error).message;
      st.failures.push({ path: path.name, test, round: roundNo, error: msg.split('\n')[0] });
      o.log(`${tag} FAILED: ${msg}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** One round of one path: built afresh in its own namespaces, checked, measured, torn down. */
async function benchPath(o: BenchOptions, st: Progress, path: DataPath, roundNo: number): Promise<void> {
  let topo: FanTopology | undefined;
  let inst: PathInstance | undefined;
  try {
    topo = await createFanTopology();
    const [a, b] = topo.hosts;
    const env: PathEnv = { topo, a, b, workers: o.workers, log: o.log };
    try {
      inst = await path.setup(env);
    } catch (e) {
      if (topo.lab.isDestroyed) throw new Interrupted();
      return setupFailed(o, st, path, roundNo, e as Error);
    }
    await o.onSetup?.(path.name, topo, inst);
    if (!st.infoShown.has(path.name)) {
      st.infoShown.add(path.name);
      if (inst.info) o.log(`${path.name}: ${inst.info}`);
    }
    const ping = await topo.ping(inst.client, inst.server.address, { count: 1, timeoutS: 3 });
    if (!ping.ok) throw new Error(`no connectivity ${inst.client.address} -> ${inst.server.address}`);
    await runTests(o, st, topo, inst, path, roundNo);
  } catch (e) {
    if (e instanceof Interrupted || topo?.lab.isDestroyed) throw new Interrupted();
    st.failures.push({ path: path.name, round: roundNo, error: (e as Error).message.split('\n')[0] });
    o.log(`${path.name}: round ${roundNo}: ${(e as Error).message}`);
  } finally {
    if (inst?.teardown) await inst.teardown().catch((e: Error) => o.log(`${path.name}: teardown: ${e.message}`));
    await topo?.destroy();
  }
}

/** The machine before the bench: its facts, and how busy it already is (a shared machine's other work). */
async function machineBefore(o: BenchOptions): Promise<Machine> {
  const machine = await machineInfo(o);
  const b0 = busyTicks();
  await new Promise((r) => setTimeout(r, 1000));
  machine.backgroundBusyPercent = round((100 * (busyTicks() - b0)) / clockTicks() / machine.cores, 1);
  if (machine.backgroundBusyPercent > 10) {
    o.log(`warning: the machine is ${machine.backgroundBusyPercent}% busy before the bench starts; figures will be low and CPU costs high`);
  }
  return machine;
}

/** The samples summed up per path and test (rounded for the report), with the share other work took. */
function buildReport(o: BenchOptions, st: Progress): BenchReport {
  const { machine, samples } = st;
  machine.unavailable = [...st.unavailable].map(([path, reason]) => ({ path, reason }));
  const wall = samples.reduce((a, s) => a + (s.wallSeconds ?? 0), 0);
  if (wall > 0) {
    machine.othersBusyPercent = round((100 * samples.reduce((a, s) => a + (s.othersCpuSeconds ?? 0), 0)) / (wall * machine.cores), 1);
    if (machine.othersBusyPercent > 5) {
      o.log(`warning: other processes used ${machine.othersBusyPercent}% of the machine during the runs: figures are not clean`);
    }
  }
  const results = summarize(samples, o.paths).map((r) => ({
    ...r,
    gbps: { median: round(r.gbps.median, 3), min: round(r.gbps.min, 3), max: round(r.gbps.max, 3) },
    ...(r.kpps ? { kpps: { median: round(r.kpps.median, 1), min: round(r.kpps.min, 1), max: round(r.kpps.max, 1) } } : {}),
    ...(r.lossPercent
      ? { lossPercent: { median: round(r.lossPercent.median, 2), min: round(r.lossPercent.min, 2), max: round(r.lossPercent.max, 2) } }
      : {}),
    cpuSecondsPerGbit: round(r.cpuSecondsPerGbit, 3),
  }));
  return { machine, results, ratios: ratios(results), failures: st.failures };
}

export async function runBench(o: BenchOptions): Promise<BenchReport & { kernelIpipUml?: KernelIpipUmlResult }> {
  if (process.getuid?.() !== 0) throw new Error('the bench builds network namespaces: run it as root');
  if ((await run(['sh', '-c', 'command -v iperf3'], { allowFail: true })).code !== 0) {
    throw new Error('iperf3 not installed (Debian package iperf3)');
  }
  const cleaned = await cleanupOrphans();
  if (cleaned.length) o.log(`removed leftovers of dead lab runs: ${cleaned.join(', ')}`);
  const machine = await machineBefore(o);
  const selected = o.paths.map((n) => pathByName(n)!);
  const unavailable = await probePaths(selected);
  for (const [path, reason] of unavailable) o.log(`${path}: not available: ${reason}`);
  const active = selected.filter((p) => !unavailable.has(p.name));
  const st: Progress = {
    machine, active, unavailable, samples: [], failures: [], n: 0, total: active.length * o.repeat * o.tests.length, infoShown: new Set(), succeeded: new Set(),
  };
  const started = Date.now();
  o.log(`${machineLine(machine)}`);
  o.log(`${active.length} paths × ${o.tests.length} tests × ${o.repeat} rounds, ${o.seconds} s each`);
  for (let roundNo = 1; roundNo <= o.repeat; roundNo++) {
    for (const path of [...st.active]) await benchPath(o, st, path, roundNo);
  }
  const r: BenchReport & { kernelIpipUml?: KernelIpipUmlResult } = buildReport(o, st);
  if (o.kernelIpip === 'uml') {
    o.log('kernel-ipip-uml: kernel ipip and plain routing inside user-mode Linux');
    try {
      r.kernelIpipUml = await measureKernelIpipUml({ seconds: o.seconds, repeat: o.repeat, log: o.log });
    } catch (e) {
      st.failures.push({ path: 'kernel-ipip-uml', round: 0, error: (e as Error).message.split('\n')[0] });
      o.log(`kernel-ipip-uml: ${(e as Error).message}`);
    }
  }
  o.log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return r;
}

/** The tables on stdout, and the files asked for. */
function writeOutputs(o: BenchOptions, report: BenchReport & { kernelIpipUml?: KernelIpipUmlResult }): void {
  let table = renderTable(report);
  if (report.kernelIpipUml) table += `\n\n${formatKernelIpipUml(report.kernelIpipUml)}`;
  console.log('');
  console.log(machineLine(report.machine));
  console.log('');
  console.log(table);
  if (o.json) writeFileSync(o.json, JSON.stringify(report, null, 2) + '\n');
  if (o.svg) writeFileSync(o.svg, renderSvg(report));
  if (o.markdown) writeFileSync(o.markdown, `${machineLine(report.machine)}\n\n${table}\n`);
  for (const [f, what] of [
    [o.json, 'JSON'],
    [o.svg, 'chart'],
    [o.markdown, 'Markdown'],
  ] as const) {
    if (f) console.log(`${what}: ${f}`);
  }
}

export async function main(argv: string[]): Promise<number> {
  let o: BenchOptions;
  try {
    o = parseArgs(argv);
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  try {
    const report = await runBench(o);
    writeOutputs(o, report);
    return report.results.length ? 0 : 1;
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
