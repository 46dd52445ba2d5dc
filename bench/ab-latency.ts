/**
 * Echo round trips of two builds side by side (the latency counterpart of bench/ab-builds.sh): each round
 * builds every path afresh, in turn — the reference paths from this checkout, then each userfan path from
 * OLD and from NEW — with bench/latency.ts's warm-up (20 echoes, a pause for userfan's neighbour copy, a
 * `ping -f` flood), then --count echoes 10 ms apart. Prints each path's median over all echoes, its round
 * medians, and what it adds over the reference (kernel VXLAN).
 *
 *   npm run build && node dist/bench/ab-latency.js --old ../old [--new .] [--paths vxlan,c-relay-spin,userfan]
 *       [--rounds 5] [--count 200]
 * OLD and NEW are built checkouts (npm install && npm run build); paths named userfan* run from both.
 */
import { resolve } from 'node:path';
import type { DataPath } from './paths/index.js';
import { echoRtts, runIfMain, warmUpEchoes, withPath } from './echo.js';
import { median } from './report.js';

interface Options {
  old: string;
  new: string;
  paths: string[];
  rounds: number;
  count: number;
}

function parse(argv: string[]): Options {
  const o: Options = { old: '', new: '.', paths: ['vxlan', 'c-relay-spin', 'userfan'], rounds: 5, count: 200 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === '--old') o.old = v;
    else if (a === '--new') o.new = v;
    else if (a === '--paths') o.paths = v.split(',');
    else if (a === '--rounds') o.rounds = Number(v);
    else if (a === '--count') o.count = Number(v);
    else throw new Error(`unknown option ${a}`);
  }
  if (!o.old) throw new Error('--old DIR (a built checkout) is required');
  if (!(Number.isInteger(o.rounds) && o.rounds >= 1 && Number.isInteger(o.count) && o.count >= 100)) throw new Error('--rounds ≥ 1 and --count ≥ 100');
  return o;
}

/** A build's path, by name, from that checkout's dist (so that it runs that checkout's CLI). */
async function pathFrom(dir: string, name: string): Promise<DataPath> {
  const mod = (await import(`${resolve(dir)}/dist/bench/paths/index.js`)) as { pathByName(n: string): DataPath | undefined };
  const p = mod.pathByName(name);
  if (!p) throw new Error(`${dir}: no path ${name}`);
  return p;
}

function echoes(path: DataPath, count: number): Promise<number[]> {
  return withPath(path, async (topo, inst) => {
    const server = inst.server.address;
    await warmUpEchoes(topo, inst.client, server);
    return echoRtts(topo, inst.client, server, count);
  });
}

export async function main(argv: string[]): Promise<number> {
  const o = parse(argv);
  const runs: { label: string; path: DataPath; all: number[]; rounds: number[] }[] = [];
  for (const name of o.paths) {
    const builds = name.startsWith('userfan') ? [['old', o.old], ['new', o.new]] : [['', o.new]];
    for (const [tag, dir] of builds) runs.push({ label: tag ? `${name} (${tag})` : name, path: await pathFrom(dir, name), all: [], rounds: [] });
  }
  for (let round = 1; round <= o.rounds; round++) {
    for (const run of runs) {
      const t = await echoes(run.path, o.count);
      if (t.length < o.count * 0.95) throw new Error(`${run.label}: only ${t.length} of ${o.count} echoes answered`);
      run.all.push(...t);
      run.rounds.push(median(t));
      console.log(`round ${round} ${run.label.padEnd(28)} median ${median(t).toFixed(0)} µs`);
    }
  }
  const ref = runs[0];
  console.log(`\npath                          median µs   over ${ref.label} µs   round medians`);
  for (const run of runs) {
    const m = median(run.all);
    console.log(`${run.label.padEnd(28)} ${m.toFixed(0).padStart(9)} ${(m - median(ref.all)).toFixed(0).padStart(15)}   ${run.rounds.map((x) => x.toFixed(0)).join(' ')}`);
  }
  return 0;
}

runIfMain(import.meta.url, main);
