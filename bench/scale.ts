/**
 * The scale harness (issue 22): for each N, N hosts in one fan on one underlay bridge namespace, `userfan up
 * --workers 1` in each, and:
 *   - the time to build the namespaces and to bring the N daemons up (each daemon's own time too);
 *   - all-pairs reachability: `ping -c1 -W1` from every host's bridge address to every other's, `--rounds`
 *     rounds (round 1 is every pair's first packet, ARP both ways included; later rounds are steady),
 *     lost count and round trips p50/p99; with `--targets underlay` the same between the underlay
 *     addresses, without userfan in the path;
 *   - each daemon's RSS (/proc/PID/status VmRSS) and idle CPU over a quiet interval (/proc/PID/stat
 *     utime+stime), right after up and again after the pings;
 *   - the kernel's neighbour table (entries, new table_fulls, "neighbour table overflow" lines) and
 *     userfan's own drop counters and log events.
 * Prints a table per N and at the end, and writes JSON (--json), Markdown (--markdown) and a plot (--svg).
 *
 *   npm run build && node dist/bench/scale.js --hosts 16,32,64,128 [--rounds 2] [--json FILE] [--svg FILE]
 *
 * Every namespace is `ufsc???-…` and removed afterwards (also on failure or a signal); the kernel's
 * neighbour limits are raised for the run and given back (src/lab/neighbour-limits.ts; --keep-limits
 * leaves them as they are, to see what happens without). A size the free memory cannot hold (daemons at
 * --mib-per-host each, plus a reserve) is skipped and says so.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { formatTable, markdown, renderScaleSvg } from './scale-report.js';
import { memAvailableMiB } from './scale-probe.js';
import { cleanupOwnLeftovers, runScale, type ScaleOptions, type ScaleResult } from './scale-run.js';

const USAGE = `usage: node dist/bench/scale.js [options]
  --hosts 16,32,64,128   sizes, in order (2 to 250 hosts)
  --rounds N             all-pairs rounds per target (default 2)
  --targets overlay[,underlay]   what to ping: the hosts' fan bridges through userfan (default), the
                         underlay addresses directly, or both (one after the other)
  --wait S               ping -W (default 1)
  --sources N            hosts pinging at once (default 2); --per-source N pings at once from each (default 4)
  --up-parallel N        daemons started at once (default 1, as a boot would)
  --workers N            userfan workers per daemon (default 1)
  --up-arg ARG           one more argument for every userfan up (repeatable)
  --quiet S              seconds over which idle CPU is measured (default 10)
  --keep-limits          leave the kernel's neighbour limits (gc_thresh1/2/3) as they are
  --no-daemons           no userfan: underlay pings only
  --mib-per-host M       memory a host is assumed to need when checking free memory (default 110)
  --json FILE  --markdown FILE  --svg FILE`;

export interface ScaleCli extends ScaleOptions {
  hosts: number[];
  mibPerHost: number;
  json?: string;
  markdownFile?: string;
  svg?: string;
}

export function parseScaleArgs(argv: string[]): ScaleCli {
  const o: ScaleCli = {
    hosts: [16, 32, 64, 128], rounds: 2, targets: ['overlay'], waitS: 1, sources: 2, perSource: 4, upParallel: 1, workers: 1, upArgs: [],
    quietS: 10, neighbourRoom: true, noDaemons: false, mibPerHost: 110, log: (l) => console.log(l),
  };
  const int = (v: string | undefined, name: string, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name}: an integer from ${min} to ${max}, got ${v}\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--hosts') o.hosts = (v() ?? '').split(',').map((x) => int(x, '--hosts', 2, 250));
    else if (a === '--rounds') o.rounds = int(v(), a, 1, 10);
    else if (a === '--targets') o.targets = (v() ?? '').split(',').map((t) => {
      if (t !== 'overlay' && t !== 'underlay') throw new Error(`--targets: overlay, underlay\n${USAGE}`);
      return t;
    });
    else if (a === '--wait') o.waitS = int(v(), a, 1, 10);
    else if (a === '--sources') o.sources = int(v(), a, 1, 64);
    else if (a === '--per-source') o.perSource = int(v(), a, 1, 64);
    else if (a === '--up-parallel') o.upParallel = int(v(), a, 1, 32);
    else if (a === '--workers') o.workers = int(v(), a, 1, 64);
    else if (a === '--up-arg') o.upArgs.push(v() ?? '');
    else if (a === '--quiet') o.quietS = int(v(), a, 1, 300);
    else if (a === '--keep-limits') o.neighbourRoom = false;
    else if (a === '--no-daemons') o.noDaemons = true;
    else if (a === '--mib-per-host') o.mibPerHost = int(v(), a, 16, 4096);
    else if (a === '--json') o.json = v();
    else if (a === '--markdown') o.markdownFile = v();
    else if (a === '--svg') o.svg = v();
    else if (a === '--help' || a === '-h') throw new Error(USAGE);
    else throw new Error(`unknown option ${a}\n${USAGE}`);
  }
  if (o.noDaemons) o.targets = ['underlay'];
  return o;
}

export interface ScaleReport {
  command: string;
  date: string;
  machine: { cores: number; memGiB: number; kernel: string; node: string };
  options: Omit<ScaleCli, 'log' | 'hosts'>;
  results: ScaleResult[];
  skipped: { hosts: number; why: string }[];
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const o = parseScaleArgs(argv);
  const removed = await cleanupOwnLeftovers();
  if (removed.length) o.log(`removed leftovers of earlier runs: ${removed.join(' ')}`);
  const { log: _log, hosts, ...options } = o;
  const report: ScaleReport = {
    command: `node dist/bench/scale.js ${argv.join(' ')}`.trim(),
    date: new Date().toISOString(),
    machine: { cores: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release(), node: process.version },
    options, results: [], skipped: [],
  };
  for (const n of hosts) {
    const need = (o.noDaemons ? 8 : o.mibPerHost) * n + 1536;
    const have = memAvailableMiB();
    if (have < need) {
      const why = `${have} MiB available, ${need} MiB needed (${o.mibPerHost} MiB a host + 1.5 GiB)`;
      o.log(`${n} hosts: skipped: ${why}`);
      report.skipped.push({ hosts: n, why });
      continue;
    }
    o.log(`${n} hosts (${have} MiB available):`);
    const r = await runScale(n, o);
    report.results.push(r);
    o.log(formatTable([r]));
    if (o.json) writeFileSync(o.json, JSON.stringify(report, null, 2) + '\n'); // after each size: a later one may fail
  }
  o.log('\n' + formatTable(report.results));
  if (o.json) writeFileSync(o.json, JSON.stringify(report, null, 2) + '\n');
  if (o.markdownFile) writeFileSync(o.markdownFile, markdown(report));
  if (o.svg) writeFileSync(o.svg, renderScaleSvg(report));
  const lost = report.results.reduce((a, r) => a + r.rounds.reduce((b, x) => b + x.lost, 0), 0);
  return lost === 0 ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (e: Error) => {
      console.error(e.message);
      process.exitCode = 2;
    },
  );
}
