// userfan itself: `userfan up` in each host namespace (foreground daemon; it creates the TUN device and the
// fan bridge fan-250-0-28 with .1/24, MTU 1480, and prints a JSON line with "event":"ready" when the data
// plane runs; SIGTERM tears it down). Containers then join that bridge.
import { existsSync } from 'node:fs';
import { allowedCpus } from '../../src/control/cpus.js';
import { CLI } from '../../src/lab/userfan-lab.js';
import { PathUnavailable, type DataPath, type PathEnv } from './types.js';

/** Extra `userfan up` arguments: the same for both hosts, or per host (0: A, 1: B). */
type ExtraArgs = string[] | ((host: number) => string[]);

/** " --send raw" when both hosts get the same, " (A: --cpus 0; B: --cpus 1)" when not. */
function argsText(a: string[], b: string[]): string {
  const [ta, tb] = [a.join(' '), b.join(' ')];
  if (ta === tb) return ta ? ` ${ta}` : '';
  return ` (A: ${ta || 'nothing more'}; B: ${tb || 'nothing more'})`;
}

function userfanPath(name: string, workers: (env: PathEnv) => number, extraArgs: ExtraArgs = []): DataPath {
  return {
    name,
    async probe() {
      return existsSync(CLI) ? undefined : 'userfan CLI not built';
    },
    async setup(env) {
      const { topo, a, b } = env;
      if (!existsSync(CLI)) throw new PathUnavailable('userfan CLI not built');
      const n = workers(env);
      const extra = (host: number) => (typeof extraArgs === 'function' ? extraArgs(host) : extraArgs);
      const procs = [a, b].map((h, i) =>
        topo.spawn(h, ['node', CLI, 'up', '-o', h.slice.overlay, '-u', h.underlayCidr, '--workers', String(n), ...extra(i)], {
          env: { NODE_ENV: 'production' },
        }),
      );
      try {
        await Promise.all(procs.map((p) => p.waitForLine(/"event"\s*:\s*"ready"/, 30_000)));
      } catch (e) {
        await Promise.all(procs.map((p) => p.stop(5000)));
        const failed = procs.find((p) => !p.running && p.exitSignal !== 'SIGTERM') ?? procs[0];
        const host = failed === procs[0] ? a : b;
        const last = failed.lines.filter((l) => l.line.trim()).at(-1)?.line.trim() ?? '';
        if (/unknown command/i.test(last)) throw new PathUnavailable(`userfan CLI has no "up" command yet (${last})`);
        const why = failed.exitCode !== null ? `exited with code ${failed.exitCode}` : (e as Error).message.split('\n')[0];
        throw new Error(`userfan up on host ${host.name} ${why}${last ? `: ${last}` : ''}`);
      }
      // The VXLAN type's bridge is named after the overlay and holds slice.1/8: one L2 segment.
      const vxlan = extra(0).includes('vxlan');
      const on = (h: typeof a) => (vxlan ? { bridge: 'fan-250', prefixLen: 8 } : { bridge: h.slice.bridge });
      const client = await topo.addContainer(a, { ...on(a), waitForBridgeMs: 5000 });
      const server = await topo.addContainer(b, { ...on(b), waitForBridgeMs: 5000 });
      return {
        client,
        server,
        info: `userfan up --workers ${n}${argsText(extra(0), extra(1))}; containers on ${on(a).bridge} / ${on(b).bridge}, MTU ${client.mtu}`,
        teardown: async () => {
          // SIGTERM: the daemon removes what it created; then the lab deletes the namespaces
          await Promise.all(procs.map((p) => p.stop(8000)));
        },
      };
    },
  };
}

/** The defaults: a worker per CPU, --send gso (TCP super-packets whole by MAC where the kernel takes it). */
export const userfan = userfanPath('userfan', (env) => env.workers);
/** Every packet through the raw socket, super-packets cut in user space (up --send raw). */
export const userfanRaw = userfanPath('userfan-raw', (env) => env.workers, ['--send', 'raw']);
/** One worker per host, otherwise the defaults. */
export const userfan1w = userfanPath('userfan-1w', () => 1);
/** One worker per host, every packet through the raw socket (up --send raw). */
export const userfan1wRaw = userfanPath('userfan-1w-raw', () => 1, ['--send', 'raw']);
/** One worker per host without TUN offloads: one packet per 1480 bytes all the way. */
export const userfan1wNoOffload = userfanPath('userfan-1w-nooffload', () => 1, ['--offload', 'off']);
/**
 * One worker per host, both workers pinned to the last CPU this process may use (up --cpus): the lab's
 * two hosts share this machine, so that keeps the whole echo path on one CPU's caches.
 */
export const userfan1wPinned = userfanPath('userfan-1w-pinned', () => 1, () => ['--cpus', String(allowedCpus().at(-1))]);
/** One worker per host, A's pinned to the first CPU this process may use and B's to the last. */
export const userfan1wSpread = userfanPath('userfan-1w-spread', () => 1, (host) => ['--cpus', String(host === 0 ? allowedCpus()[0] : allowedCpus().at(-1))]);
/** The Fan's VXLAN type (up --type vxlan): a worker per CPU; one worker per host. */
export const userfanVxlan = userfanPath('userfan-vxlan', (env) => env.workers, ['--type', 'vxlan']);
export const userfan1wVxlan = userfanPath('userfan-1w-vxlan', () => 1, ['--type', 'vxlan']);
/** The VXLAN type without TX GSO (up --send raw): every datagram through the UDP socket, super-frames by UDP GSO. */
export const userfanVxlanRaw = userfanPath('userfan-vxlan-raw', (env) => env.workers, ['--type', 'vxlan', '--send', 'raw']);
/** The VXLAN type without TAP offloads (up --offload off): one datagram per frame both ways. */
export const userfanVxlanNoOffload = userfanPath('userfan-vxlan-nooffload', (env) => env.workers, ['--type', 'vxlan', '--offload', 'off']);
/** One worker per host that sleeps as soon as it runs out of packets (up --busy-poll 0). */
export const userfan1wNoBusyPoll = userfanPath('userfan-1w-nobusypoll', () => 1, ['--busy-poll', '0']);
