// npm run bench -- [--quick] [--json FILE] [--svg FILE] [--markdown FILE] [--paths a,b] [--tests t1,t2]
//                  [--repeat N] [--seconds S] [--workers N]
//
// The two-host container-to-container topology of the demo, one data path at a time, iperf3 from a
// container on host A to a container on host B. Every round builds each path afresh in its own
// namespaces (so exactly one data path exists at any moment), runs tcp1, tcp4 and udp1400 on it and
// tears it down; rounds interleave the paths A B C … A B C …. CPU cost is machine-wide busy time from
// /proc/stat while the iperf3 client runs, divided by the gigabits received.
import { readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { Lab, cleanupOrphans, run } from '../src/lab/netns.js';
import { createFanTopology, type Container, type FanTopology } from '../src/lab/topology.js';
import { ALL_PATHS, PathUnavailable, pathByName, repoRoot, type DataPath, type PathEnv, type PathInstance } from './paths/index.js';
import {
  TESTS,
  TEST_ARGS,
  machineLine,
  parseIperf,
  ratios,
  renderTable,
  round,
  summarize,
  type BenchReport,
  type Failure,
  type Machine,
  type Sample,
  type TestName,
} from './report.js';
import { renderSvg } from './svg.js';
import { formatKernelIpipUml, measureKernelIpipUml, type KernelIpipUmlResult } from './paths/kernel-ipip-uml.js';

export interface BenchOptions {
  paths: string[];
  tests: TestName[];
  repeat: number;
  seconds: number;
  quick: boolean;
  workers: number;
  json?: string;
  svg?: string;
  markdown?: string;
  /** Before each run wait up to this many seconds for the machine to be quiet (0: don't). */
  waitQuiet: number;
  /** 'uml': also measure kernel ipip against its own plain ceiling inside user-mode Linux (this kernel has none). */
  kernelIpip?: 'uml';
  log: (line: string) => void;
  /** Called with each path's topology and instance once set up (tests inspect them). */
  onSetup?: (path: string, topo: FanTopology, inst: PathInstance) => void | Promise<void>;
}

const USAGE = `usage: npm run bench -- [options]
  --quick            short run (1 s per test, 2 rounds): finishes in under 3 minutes
  --paths a,b,...    data paths (default: all) — ${ALL_PATHS.map((p) => p.name).join(', ')}
  --tests a,b,...    tests (default: all) — ${TESTS.join(', ')}
  --repeat N         rounds; each round runs every path once (default 3, quick 2)
  --seconds S        iperf3 duration per run (default 5, quick 1)
  --workers N        userfan workers for the "userfan" path (default: cores)
  --wait-quiet S     before each run wait up to S s for the machine to be idle (shared machines)
  --json FILE        write machine-readable results
  --svg FILE         write a bar chart
  --markdown FILE    write the tables as Markdown
  --kernel-ipip uml  also measure kernel ipip inside user-mode Linux (relative to its own plain
                     ceiling there; for kernels without ipip; see bench/paths/kernel-ipip-uml.ts)`;

export function parseArgs(argv: string[]): BenchOptions {
  const o: BenchOptions = {
    paths: ALL_PATHS.map((p) => p.name),
    tests: [...TESTS],
    repeat: 0,
    seconds: 0,
    quick: false,
    workers: os.cpus().length,
    waitQuiet: 0,
    log: (l) => console.log(l),
  };
  const val = (i: number, name: string) => {
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value\n${USAGE}`);
    return v;
  };
  const int = (s: string, name: string, min: number, max: number) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name}: an integer ${min}..${max}, got ${s}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--quick':
        o.quick = true;
        break;
      case '--json':
        o.json = val(i++, a);
        break;
      case '--svg':
        o.svg = val(i++, a);
        break;
      case '--markdown':
        o.markdown = val(i++, a);
        break;
      case '--paths': {
        const names = val(i++, a).split(',').map((s) => s.trim()).filter(Boolean);
        for (const n of names) if (!pathByName(n)) throw new Error(`unknown path ${n}; known: ${ALL_PATHS.map((p) => p.name).join(', ')}`);
        o.paths = names;
        break;
      }
      case '--tests': {
        const names = val(i++, a).split(',').map((s) => s.trim()).filter(Boolean);
        for (const n of names) if (!TESTS.includes(n as TestName)) throw new Error(`unknown test ${n}; known: ${TESTS.join(', ')}`);
        o.tests = names as TestName[];
        break;
      }
      case '--repeat':
        o.repeat = int(val(i++, a), a, 1, 100);
        break;
      case '--seconds':
        o.seconds = int(val(i++, a), a, 1, 600);
        break;
      case '--kernel-ipip': {
        const v = val(i++, a);
        if (v !== 'uml') throw new Error(`--kernel-ipip: only "uml" is supported, got ${v}`);
        o.kernelIpip = 'uml';
        break;
      }
      case '--wait-quiet':
        o.waitQuiet = int(val(i++, a), a, 0, 3600);
        break;
      case '--workers':
        o.workers = int(val(i++, a), a, 1, 256);
        break;
      case '-h':
      case '--help':
        throw new Error(USAGE);
      default:
        throw new Error(`unknown option ${a}\n${USAGE}`);
    }
  }
  if (!o.repeat) o.repeat = o.quick ? 2 : 3;
  if (!o.seconds) o.seconds = o.quick ? 1 : 5;
  return o;
}

// ---- CPU accounting ----

let clkTck = 100;

/** Machine-wide busy CPU time in clock ticks (user+nice+system+irq+softirq; not idle, iowait, steal). */
export function busyTicks(stat = readFileSync('/proc/stat', 'utf8')): number {
  const line = stat.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('/proc/stat has no cpu line');
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq] = f;
  return user + nice + system + (irq ?? 0) + (softirq ?? 0);
}

/**
 * CPU ticks (user+system) of every userspace process outside the given network namespaces, by pid
 * (with its start time, against pid reuse). The difference across a run is what other work on the
 * machine took while we measured: the bench's own processes all live in the lab's namespaces.
 */
export function othersTicks(ourNetns: Set<string>): Map<number, { start: string; ticks: number }> {
  const out = new Map<number, { start: string; ticks: number }>();
  for (const d of readdirSync('/proc')) {
    const pid = Number(d);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (ourNetns.has(readlinkSync(`/proc/${pid}/ns/net`))) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[6]) & 0x00200000) continue; // PF_KTHREAD: softirq work is everyone's, ours included
      out.set(pid, { start: f[19], ticks: Number(f[11]) + Number(f[12]) });
    } catch {
      /* gone, or a kernel thread without ns */
    }
  }
  return out;
}

function othersDelta(before: Map<number, { start: string; ticks: number }>, after: Map<number, { start: string; ticks: number }>): number {
  let sum = 0;
  for (const [pid, a] of after) {
    const b = before.get(pid);
    sum += b && b.start === a.start ? a.ticks - b.ticks : a.ticks;
  }
  return sum;
}

function labNetns(topo: FanTopology): Set<string> {
  const s = new Set<string>();
  for (const n of topo.lab.namespaces) {
    try {
      s.add(`net:[${statSync(`/run/netns/${n}`).ino}]`);
    } catch {
      /* deleted */
    }
  }
  return s;
}

/**
 * Wait until processes outside the lab use < 15 % of all cores over 0.5 s (our own idle daemons don't
 * count), at most maxMs. Returns that busy %.
 */
async function waitQuiet(topo: FanTopology, maxMs: number, cores: number): Promise<number> {
  const until = Date.now() + maxMs;
  const ns = labNetns(topo);
  for (;;) {
    const b0 = othersTicks(ns);
    await new Promise((r) => setTimeout(r, 500));
    const pct = (100 * othersDelta(b0, othersTicks(ns))) / clkTck / 0.5 / cores;
    if (pct < 15 || Date.now() >= until) return pct;
  }
}

// ---- one iperf3 run ----

const PORT = 5201;

async function waitListening(topo: FanTopology, c: Container, port: number, ms: number, server: { running: boolean; tail(): string }): Promise<void> {
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
  const srv = topo.spawn(server, ['timeout', String(bound + 10), 'iperf3', '-s', '-1', '-B', server.address, '-p', String(PORT)]);
  try {
    await waitListening(topo, server, PORT, 5000, srv);
    const ns = labNetns(topo);
    const o0 = othersTicks(ns);
    const w0 = Date.now();
    const t0 = busyTicks();
    const r = await topo.exec(
      client,
      ['timeout', String(bound), 'iperf3', '-c', server.address, '-p', String(PORT), '-t', String(seconds), '-J', '--connect-timeout', '3000', ...TEST_ARGS[test]],
      { allowFail: true, timeoutMs: (bound + 5) * 1000 },
    );
    const t1 = busyTicks();
    const wallSeconds = (Date.now() - w0) / 1000;
    const othersCpuSeconds = othersDelta(o0, othersTicks(ns)) / clkTck;
    let parsed;
    try {
      parsed = parseIperf(r.stdout, test);
    } catch (e) {
      const why = r.code === 124 ? 'timed out' : `exit ${r.code}`;
      throw new Error(`iperf3 ${test} (${why}): ${(e as Error).message}${r.stderr.trim() ? `\n${r.stderr.trim().slice(-500)}` : ''}`);
    }
    return { test, ...parsed, cpuSeconds: (t1 - t0) / clkTck, othersCpuSeconds, wallSeconds };
  } finally {
    await srv.wait(3000); // -1: it exits after the test; if not, SIGKILL
  }
}

// ---- the harness ----

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
async function probePaths(paths: DataPath[], root: string): Promise<Map<string, string>> {
  const unavailable = new Map<string, string>();
  const lab = await Lab.create();
  try {
    const ns = await lab.addNamespace('probe');
    for (const p of paths) {
      const reason = await p
        .probe({ ns, root, exec: (n, argv) => run(argv, { ns: n, allowFail: true }) })
        .catch((e: Error) => `probe failed: ${e.message}`);
      if (reason) unavailable.set(p.name, reason);
    }
  } finally {
    await lab.destroy();
  }
  return unavailable;
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  if (process.getuid?.() !== 0) throw new Error('the bench builds network namespaces: run it as root');
  if ((await run(['sh', '-c', 'command -v iperf3'], { allowFail: true })).code !== 0) {
    throw new Error('iperf3 not installed (Debian package iperf3)');
  }
  clkTck = Number((await run(['getconf', 'CLK_TCK'], { allowFail: true })).stdout.trim()) || 100;
  const root = repoRoot();
  const cleaned = await cleanupOrphans();
  if (cleaned.length) o.log(`removed leftovers of dead lab runs: ${cleaned.join(', ')}`);

  const machine = await machineInfo(o);
  // what else is using the machine: busy share of all cores over one second before we start
  const b0 = busyTicks();
  await new Promise((r) => setTimeout(r, 1000));
  machine.backgroundBusyPercent = round((100 * (busyTicks() - b0)) / clkTck / machine.cores, 1);
  if (machine.backgroundBusyPercent > 10) {
    o.log(`warning: the machine is ${machine.backgroundBusyPercent}% busy before the bench starts; figures will be low and CPU costs high`);
  }
  const selected = o.paths.map((n) => pathByName(n)!);
  const unavailable = await probePaths(selected, root);
  for (const [path, reason] of unavailable) o.log(`${path}: not available: ${reason}`);
  let active = selected.filter((p) => !unavailable.has(p.name));

  const samples: Sample[] = [];
  const failures: Failure[] = [];
  const total = active.length * o.repeat * o.tests.length;
  let n = 0;
  const started = Date.now();
  o.log(`${machineLine(machine)}`);
  o.log(`${active.length} paths × ${o.tests.length} tests × ${o.repeat} rounds, ${o.seconds} s each`);
  const infoShown = new Set<string>();
  const succeeded = new Set<string>();

  for (let roundNo = 1; roundNo <= o.repeat; roundNo++) {
    for (const path of [...active]) {
      let topo: FanTopology | undefined;
      let inst: PathInstance | undefined;
      try {
        topo = await createFanTopology();
        const [a, b] = topo.hosts;
        const env: PathEnv = { topo, a, b, root, workers: o.workers, log: o.log };
        try {
          inst = await path.setup(env);
        } catch (e) {
          if (topo.lab.isDestroyed) throw new Interrupted();
          const why = e instanceof PathUnavailable ? e.message : `setup failed: ${(e as Error).message.split('\n')[0]}`;
          if (e instanceof PathUnavailable || !succeeded.has(path.name)) {
            // never worked: say so once and drop it from later rounds
            unavailable.set(path.name, why);
            active = active.filter((p) => p !== path);
            o.log(`${path.name}: not available: ${why}`);
            if (!(e instanceof PathUnavailable)) o.log(String((e as Error).message));
            n += o.tests.length * (o.repeat - roundNo + 1);
          } else {
            failures.push({ path: path.name, round: roundNo, error: why });
            o.log(`${path.name}: round ${roundNo}: ${why}`);
            n += o.tests.length;
          }
          continue;
        }
        await o.onSetup?.(path.name, topo, inst);
        if (!infoShown.has(path.name)) {
          infoShown.add(path.name);
          if (inst.info) o.log(`${path.name}: ${inst.info}`);
        }
        const ping = await topo.ping(inst.client, inst.server.address, { count: 1, timeoutS: 3 });
        if (!ping.ok) throw new Error(`no connectivity ${inst.client.address} -> ${inst.server.address}`);
        for (const test of o.tests) {
          n++;
          const tag = `[${String(n).padStart(String(total).length)}/${total}] round ${roundNo}/${o.repeat} ${pad(path.name, 12)} ${pad(test, 8)}`;
          try {
            if (o.waitQuiet) {
              const pct = await waitQuiet(topo, o.waitQuiet * 1000, machine.cores);
              if (pct >= 15) o.log(`${tag} machine still ${pct.toFixed(0)}% busy after waiting ${o.waitQuiet} s; running anyway`);
            }
            const s = await runIperf(topo, inst.client, inst.server, test, o.seconds);
            samples.push({ ...s, path: path.name, round: roundNo });
            succeeded.add(path.name);
            const extra = s.kpps !== undefined ? `  ${s.kpps.toFixed(0).padStart(4)} kpps  loss ${s.lossPercent!.toFixed(1)}%` : '';
            const cpg = s.bytes > 0 ? (s.cpuSeconds / ((s.bytes * 8) / 1e9)).toFixed(2) : '–';
            const others = s.othersCpuSeconds && s.othersCpuSeconds >= 0.05 ? `  [others used ${s.othersCpuSeconds.toFixed(2)} CPU-s]` : '';
            o.log(`${tag} ${s.gbps.toFixed(2).padStart(6)} Gbit/s${extra}  cpu ${s.cpuSeconds.toFixed(2)} s (${cpg} s/Gbit)${others}`);
          } catch (e) {
            if (topo.lab.isDestroyed) throw new Interrupted();
            const msg = (e as Error).message;
            failures.push({ path: path.name, test, round: roundNo, error: msg.split('\n')[0] });
            o.log(`${tag} FAILED: ${msg}`);
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      } catch (e) {
        if (e instanceof Interrupted || topo?.lab.isDestroyed) throw new Interrupted();
        failures.push({ path: path.name, round: roundNo, error: (e as Error).message.split('\n')[0] });
        o.log(`${path.name}: round ${roundNo}: ${(e as Error).message}`);
      } finally {
        if (inst?.teardown) await inst.teardown().catch((e: Error) => o.log(`${path.name}: teardown: ${e.message}`));
        await topo?.destroy();
      }
    }
  }

  machine.unavailable = [...unavailable].map(([path, reason]) => ({ path, reason }));
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
  const report: BenchReport & { kernelIpipUml?: KernelIpipUmlResult } = { machine, results, ratios: ratios(results), failures };
  if (o.kernelIpip === 'uml') {
    o.log('kernel-ipip-uml: kernel ipip and plain routing inside user-mode Linux');
    try {
      report.kernelIpipUml = await measureKernelIpipUml({ seconds: o.seconds, repeat: o.repeat, log: o.log });
    } catch (e) {
      failures.push({ path: 'kernel-ipip-uml', round: 0, error: (e as Error).message.split('\n')[0] });
      o.log(`kernel-ipip-uml: ${(e as Error).message}`);
    }
  }
  o.log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return report;
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
    let table = renderTable(report);
    const uml = (report as { kernelIpipUml?: KernelIpipUmlResult }).kernelIpipUml;
    if (uml) table += `\n\n${formatKernelIpipUml(uml)}`;
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
