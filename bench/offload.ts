/**
 * userfan with TUN offloads on and off, side by side in one run, interleaved (on, off, on, off, …):
 * two hosts in namespaces, `userfan up --workers 1 --offload MODE` on each (--workers to change that), a container on each, one
 * iperf3 TCP stream container → container. Per run: Gbit/s, retransmits, the machine's CPU split over the
 * run (user / system / softirq / idle from /proc/stat deltas), the two daemons' own CPU (user = JS,
 * system = their syscalls), and how busy processes outside the lab were (a shared machine).
 *
 *   npm run build && node dist/bench/offload.js [--rounds 3] [--seconds 5] [--modes on,off] [--gro]
 *       [--workers 1] [--wait-quiet 60] [--json FILE]
 *
 * --gro adds modes on+gro / off+gro: the underlay veth does GRO as a NIC would (NAPI polled by a thread,
 * the sender's TSO off), so the receiving raw socket gets IP-in-IP packets the kernel joined.
 * A mode with +notrace runs the daemons with --no-trace: the workers skip even the per-round check for
 * an attached trace. `--modes on,on+notrace` measures what the idle trace code costs.
 * A mode with +raw runs them with --send raw: every packet through the raw socket, super-packets cut in
 * user space, instead of TCP super-packets whole by MAC (TX GSO). `--modes on,on+raw` measures what TX GSO gains.
 * A mode with +busyUS runs them with --busy-poll US (+busy0: workers sleep as soon as they run out of packets).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { createFanTopology } from '../src/lab/topology.js';
import { CLI, UserfanLab, type Daemon } from '../src/lab/userfan-lab.js';
import { clockTicks, labNetns, othersDelta, othersTicks, waitQuiet } from './cpu-accounting.js';
import { IPERF_PORT, waitListening } from './iperf-run.js';

interface Options {
  rounds: number;
  seconds: number;
  modes: string[];
  waitQuiet: number;
  workers: number;
  json?: string;
}

interface Run {
  mode: string;
  round: number;
  gbps: number;
  retransmits: number;
  /** Machine-wide shares of all CPU time over the run, %. */
  cpu: { user: number; system: number; softirq: number; idle: number };
  /** The two daemons (all threads): CPU-seconds per second of run, user and system. */
  daemons: { user: number; system: number };
  /** Processes outside the lab, % of all cores over the run. */
  others: number;
  /** Scavenges + mark-compacts the daemons' isolates did during the run (--trace-gc). */
  gcs: number;
}

function parse(argv: string[]): Options {
  const o: Options = { rounds: 3, seconds: 5, modes: ['on', 'off'], waitQuiet: 0, workers: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    if (a === '--rounds') o.rounds = Number(v());
    else if (a === '--seconds') o.seconds = Number(v());
    else if (a === '--modes') o.modes = v().split(',');
    else if (a === '--gro') o.modes = o.modes.flatMap((m) => [m, `${m}+gro`]);
    else if (a === '--wait-quiet') o.waitQuiet = Number(v());
    else if (a === '--json') o.json = v();
    else if (a === '--workers') o.workers = Number(v());
    else throw new Error(`unknown option ${a}`);
  }
  if (!(o.rounds >= 1 && o.seconds >= 1)) throw new Error('--rounds and --seconds must be ≥ 1');
  for (const m of o.modes) if (!/^(on|off|auto)(\+gro)?(\+notrace)?(\+raw)?(\+busy\d+)?$/.test(m)) throw new Error(`mode ${m}: on, off, auto, optionally +gro, then optionally +notrace, then optionally +raw (up --send raw), then optionally +busyUS (up --busy-poll US)`);
  return o;
}

const cpuLine = () => readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);

/** user and system ticks of a process, all threads. */
function procTicks(pid: number): [number, number] {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return [Number(f[11]), Number(f[12])];
}

async function oneRun(o: Options, mode: string, round: number): Promise<Run> {
  const [offload, ...extras] = mode.split('+');
  const gro = extras.includes('gro');
  const noTrace = extras.includes('notrace');
  const raw = extras.includes('raw');
  const busy = extras.find((x) => x.startsWith('busy'));
  let gcs = 0;
  // The daemons run with --trace-gc: every collection in any of their isolates prints a line.
  const topo = await createFanTopology();
  const daemons: Daemon[] = [];
  const lab = new UserfanLab(topo, daemons, []);
  try {
    for (const h of topo.hosts) {
      const p = topo.spawn(h, ['node', '--trace-gc', CLI, 'up', '-o', h.slice.overlay, '-u', h.underlayCidr, '--workers', String(o.workers), '--offload', offload, ...(noTrace ? ['--no-trace'] : []), ...(raw ? ['--send', 'raw'] : []), ...(busy ? ['--busy-poll', busy.slice(4)] : [])], {
        onLine: (line: string) => {
          if (/Scavenge|Mark-Compact|Mark-sweep|Minor Mark/.test(line)) gcs++;
        },
      });
      daemons.push({ host: h, process: p });
      await p.waitForLine(/"event":"ready"/, 20_000);
    }
    for (const h of topo.hosts) lab.containers.push([await topo.addContainer(h)]);
  } catch (e) {
    await lab.destroy();
    throw e;
  }
  try {
    const [A, B] = lab.hosts;
    const [[a], [b]] = lab.containers;
    if (gro) {
      for (const h of [A, B]) {
        await lab.topo.exec(h, ['ethtool', '-K', h.underlayIf, 'gro', 'on', 'tso', 'off']);
        await lab.topo.exec(h, ['sh', '-c', `echo 1 > /sys/class/net/${h.underlayIf}/threaded`]);
      }
    }
    const shown = (await lab.show(A))[0].offload as string;
    if (!shown.startsWith(offload === 'auto' ? '' : offload)) throw new Error(`asked for --offload ${offload}, show says ${shown}`);
    if (o.waitQuiet) await waitQuiet(lab.topo.lab.namespaces, o.waitQuiet * 1000, availableParallelism(), 10);
    const bound = o.seconds + 20;
    const srv = lab.topo.spawn(b, ['timeout', String(bound + 10), 'iperf3', '-s', '-1', '-B', b.address, '-p', String(IPERF_PORT)]);
    await waitListening(lab.topo, b, IPERF_PORT, 10_000, srv);
    const pids = lab.daemons.map((d) => d.process.pid!);
    const ns = labNetns(lab.topo.lab.namespaces);
    const o0 = othersTicks(ns);
    const d0 = pids.map(procTicks);
    const c0 = cpuLine();
    const t0 = Date.now();
    gcs = 0;
    const r = await lab.topo.exec(a, ['timeout', String(bound), 'iperf3', '-c', b.address, '-p', String(IPERF_PORT), '-t', String(o.seconds), '-J', '--connect-timeout', '3000'], { timeoutMs: (bound + 5) * 1000, allowFail: true });
    const wall = (Date.now() - t0) / 1000;
    const gcCount = gcs;
    const c1 = cpuLine();
    const d1 = pids.map(procTicks);
    const others = (100 * othersDelta(o0, othersTicks(ns))) / clockTicks() / wall / availableParallelism();
    await srv.stop(2000);
    const j = JSON.parse(r.stdout || '{}');
    if (!j.end?.sum_received) throw new Error(`iperf3 failed: ${j.error ?? r.stderr}`);
    const d = c1.map((x, i) => x - c0[i]);
    const total = d.reduce((s, x) => s + x, 0);
    const pct = (i: number) => (100 * d[i]) / total;
    const du = d1.reduce((s, t, i) => s + t[0] - d0[i][0], 0);
    const ds = d1.reduce((s, t, i) => s + t[1] - d0[i][1], 0);
    return {
      mode, round, gbps: j.end.sum_received.bits_per_second / 1e9, retransmits: j.end.sum_sent.retransmits ?? 0,
      cpu: { user: pct(0) + pct(1), system: pct(2), softirq: pct(6) + pct(5), idle: pct(3) + pct(4) },
      daemons: { user: du / clockTicks() / wall, system: ds / clockTicks() / wall }, others, gcs: gcCount,
    };
  } finally {
    await lab.destroy();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export async function main(argv: string[]): Promise<number> {
  const o = parse(argv);
  const runs: Run[] = [];
  const f = (x: number, d = 0) => x.toFixed(d);
  for (let round = 1; round <= o.rounds; round++) {
    for (const mode of o.modes) {
      const r = await oneRun(o, mode, round);
      runs.push(r);
      console.log(
        `round ${round} ${mode.padEnd(14)} ${f(r.gbps, 2)} Gbit/s  retr ${r.retransmits}  cpu user ${f(r.cpu.user)}% sys ${f(r.cpu.system)}% softirq ${f(r.cpu.softirq)}% idle ${f(r.cpu.idle)}%` +
          `  daemons ${f(r.daemons.user, 2)}u+${f(r.daemons.system, 2)}s cores  others ${f(r.others)}%  gc ${r.gcs}`,
      );
    }
  }
  console.log('\nmode           median Gbit/s  range         user  sys  softirq idle  daemons(u+s cores)  others');
  for (const mode of o.modes) {
    const rs = runs.filter((r) => r.mode === mode);
    const g = rs.map((r) => r.gbps);
    console.log(
      `${mode.padEnd(14)} ${f(median(g), 2).padStart(13)}  ${f(Math.min(...g), 2)}–${f(Math.max(...g), 2)}`.padEnd(44) +
        `${f(median(rs.map((r) => r.cpu.user))).padStart(4)}% ${f(median(rs.map((r) => r.cpu.system))).padStart(3)}% ${f(median(rs.map((r) => r.cpu.softirq))).padStart(6)}% ${f(median(rs.map((r) => r.cpu.idle))).padStart(4)}%` +
        `  ${f(median(rs.map((r) => r.daemons.user)), 2)}+${f(median(rs.map((r) => r.daemons.system)), 2)}`.padEnd(20) +
        `  ${f(median(rs.map((r) => r.others)))}%`,
    );
  }
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, runs }, null, 2));
  return 0;
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(`bench/offload: ${(e as Error).stack ?? e}`);
      process.exit(1);
    },
  );
}
