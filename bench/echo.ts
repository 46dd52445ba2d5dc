/**
 * The echo steps the latency benches share (bench/latency.ts, bench/ab-latency.ts, bench/echo-syscalls.ts):
 * the warm-up every path gets before it is measured, and `ping` echoes 10 ms apart read back as round trips.
 */
import { availableParallelism } from 'node:os';
import { NEIGHBOUR_REFRESH_MS } from '../src/dataplane/pool.js';
import { createFanTopology, type FanTopology, type Host, type Target } from '../src/lab/topology.js';
import type { DataPath, PathInstance } from './paths/index.js';

/**
 * Builds a fresh two-host topology with `path` on it (`userfan` is the defaults: as many workers per host as
 * this machine has CPUs), runs fn, and tears both down, also when fn throws.
 */
export async function withPath<T>(path: DataPath, fn: (topo: FanTopology, inst: PathInstance, hosts: [Host, Host]) => Promise<T>): Promise<T> {
  let topo: FanTopology | undefined;
  let inst: PathInstance | undefined;
  try {
    topo = await createFanTopology();
    const [a, b] = topo.hosts;
    inst = await path.setup({ topo, a, b, workers: availableParallelism(), log: () => {} });
    return await fn(topo, inst, [a, b]);
  } finally {
    await inst?.teardown?.().catch(() => {});
    await topo?.destroy();
  }
}

/**
 * Warm up (ARP, neighbour entries), then give V8 enough packets to optimize the workers' code (a daemon that
 * has carried any traffic for a few seconds runs optimized code; a fresh one runs its first few thousand
 * packets through the baseline compiler). The pause lets userfan's copy of the kernel's neighbours (which
 * --send gso looks up) pick up the entries the first echoes made, so that the flood runs the lookups the
 * measured echoes run and the echoes are measured on code V8 optimized for them.
 */
export async function warmUpEchoes(t: FanTopology, client: Target, server: string, flood = 3000): Promise<void> {
  await t.exec(client, ['ping', '-c', '20', '-i', '0.01', '-W', '1', server], { allowFail: true });
  await new Promise((r) => setTimeout(r, NEIGHBOUR_REFRESH_MS + 200));
  if (flood > 0) await t.exec(client, ['ping', '-f', '-q', '-c', String(flood), '-W', '1', server], { timeoutMs: 60_000, allowFail: true });
}

/** `count` echoes 10 ms apart from client to server; returns the round trips answered, µs. */
export async function echoRtts(t: FanTopology, client: Target, server: string, count: number): Promise<number[]> {
  const r = await t.exec(client, ['ping', '-c', String(count), '-i', '0.01', '-W', '1', server], { timeoutMs: 60_000, allowFail: true });
  return [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000);
}

/** Runs a bench's main when its file is the one node was started with: exit with its code, or 1 after printing what it threw. */
export function runIfMain(url: string, main: (argv: string[]) => Promise<number>): void {
  if (!process.argv[1] || url !== `file://${process.argv[1]}`) return;
  main(process.argv.slice(2)).then(
    (c) => process.exit(c),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
