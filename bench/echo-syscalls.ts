/**
 * System calls per echo, counted rather than read from the code: `strace -c -f` on both hosts' data-plane
 * processes (userfan's daemons, or the C relay's `loop`) during --count echoes 10 ms apart, after the warm-up
 * bench/latency.ts gives every path (20 echoes, a pause for userfan's neighbour copy, a `ping -f` flood).
 * Prints, per path and host, each system call's calls per echo and, of those, how many failed (an empty
 * read or receive fails with EAGAIN). Host A sends the echo requests, host B answers them.
 *
 * The counts are exact; strace stops the process at every call, so the round trips are no latency figures
 * (bench/latency.ts measures those). The daemons' main threads are counted too (their timers, the neighbour
 * copy): run it with the same --count for paths you compare.
 *
 *   npm run build && node dist/bench/echo-syscalls.js [--paths c-relay-spin,userfan] [--count 500]
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Host } from '../src/lab/topology.js';
import { runIfMain, warmUpEchoes, withPath } from './echo.js';
import { pathByName } from './paths/index.js';

interface Options {
  paths: string[];
  count: number;
}

function parse(argv: string[]): Options {
  const o: Options = { paths: ['c-relay-spin', 'userfan'], count: 500 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === '--paths') o.paths = v.split(',');
    else if (a === '--count') o.count = Number(v);
    else throw new Error(`unknown option ${a}`);
  }
  if (!(Number.isInteger(o.count) && o.count >= 50)) throw new Error('--count must be a whole number ≥ 50');
  for (const p of o.paths) if (!pathByName(p)) throw new Error(`unknown path ${p}`);
  return o;
}

/** The data-plane processes in a host's namespace: userfan's daemon (node) or the C relay (loop). */
function dataPlanePids(h: Host): number[] {
  const r = spawnSync('ip', ['netns', 'pids', h.ns], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map(Number)
    .filter((pid) => {
      try {
        return ['node', 'loop'].includes(readFileSync(`/proc/${pid}/comm`, 'utf8').trim());
      } catch {
        return false; // gone meanwhile
      }
    });
}

/** Whether every thread of pid has a tracer attached (strace -f attaches to each). */
function traced(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).every((t) => /TracerPid:\s*[1-9]/.test(readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8')));
  } catch {
    return false;
  }
}

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** strace -c's table: calls and errors per system call. */
function parseSummary(text: string): Map<string, { calls: number; errors: number }> {
  const out = new Map<string, { calls: number; errors: number }>();
  for (const line of text.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?([a-z_0-9]+)\s*$/.exec(line);
    if (m && m[3] !== 'total') out.set(m[3], { calls: Number(m[1]), errors: Number(m[2] ?? 0) });
  }
  return out;
}

async function countOne(name: string, o: Options, dir: string): Promise<Map<string, { calls: number; errors: number }>[]> {
  return withPath(pathByName(name)!, async (topo, inst, [a, b]) => {
    const server = inst.server.address;
    await warmUpEchoes(topo, inst.client, server);
    const hosts = [a, b].map((h) => ({ h, pids: dataPlanePids(h) }));
    const tracers = hosts.flatMap(({ h, pids }) =>
      pids.map((pid) => {
        const p = spawn('strace', ['-c', '-f', '-o', join(dir, `${name}-${h.name}-${pid}.txt`), '-p', String(pid)], { stdio: 'ignore' });
        return { pid, p, exited: new Promise<void>((r) => p.on('exit', () => r())) };
      }),
    );
    try {
      await until('strace to attach', () => tracers.every((t) => traced(t.pid)), 10_000);
      const r = await topo.exec(inst.client, ['ping', '-c', String(o.count), '-i', '0.01', '-W', '1', server], { timeoutMs: 120_000, allowFail: true });
      const answered = (r.stdout.match(/time=/g) ?? []).length;
      if (answered < o.count * 0.95) throw new Error(`${name}: only ${answered} of ${o.count} echoes answered`);
    } finally {
      for (const t of tracers) t.p.kill('SIGINT');
      await Promise.all(tracers.map((t) => t.exited));
    }
    return hosts.map(({ h, pids }) => {
      const sum = new Map<string, { calls: number; errors: number }>();
      for (const pid of pids) {
        for (const [sc, v] of parseSummary(readFileSync(join(dir, `${name}-${h.name}-${pid}.txt`), 'utf8'))) {
          const s = sum.get(sc) ?? { calls: 0, errors: 0 };
          sum.set(sc, { calls: s.calls + v.calls, errors: s.errors + v.errors });
        }
      }
      return sum;
    });
  });
}

export async function main(argv: string[]): Promise<number> {
  const o = parse(argv);
  if (spawnSync('strace', ['-V']).error) throw new Error('strace is not installed (Debian package strace)');
  const dir = mkdtempSync(join(tmpdir(), 'userfan-echo-syscalls-'));
  try {
    for (const name of o.paths) {
      const [ha, hb] = await countOne(name, o, dir);
      console.log(`\n${name}: system calls per echo (${o.count} echoes 10 ms apart), calls (failed)`);
      const names = [...new Set([...ha.keys(), ...hb.keys()])].sort((x, y) => (hb.get(y)?.calls ?? 0) + (ha.get(y)?.calls ?? 0) - (hb.get(x)?.calls ?? 0) - (ha.get(x)?.calls ?? 0));
      console.log(`  ${'syscall'.padEnd(16)} ${'host A'.padStart(14)} ${'host B'.padStart(14)}`);
      const cell = (m: Map<string, { calls: number; errors: number }>, sc: string) => {
        const v = m.get(sc);
        return v ? `${(v.calls / o.count).toFixed(2)} (${(v.errors / o.count).toFixed(2)})` : '–';
      };
      for (const sc of names) console.log(`  ${sc.padEnd(16)} ${cell(ha, sc).padStart(14)} ${cell(hb, sc).padStart(14)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return 0;
}

runIfMain(import.meta.url, main);
