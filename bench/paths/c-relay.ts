// The yardstick for echo latency: the same design as userfan (a TUN device per host, a thread that reads
// it, encapsulates and sends on a protocol-4 raw socket, and receives, checks, decapsulates and writes to
// the TUN) with no JavaScript in it: `bench/loop.c relay`, one thread per host. What this path adds over
// VXLAN is what the design costs on the machine (wake-ups, system calls); what userfan adds beyond it is
// userfan's own. No offloads, no batching beyond what one poll finds, no neighbour copy: echoes only.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ProcessHandle } from '../../src/lab/exec.js';
import { PACKAGE_ROOT } from '../../src/lab/paths.js';
import { bridgedContainers, commandExists, PathUnavailable, type DataPath, type PathEnv } from './types.js';

const MTU = 1480;

/** bench/out/loop, compiled afresh from bench/loop.c (as native-bench does): a second or two per setup. */
function loopBinary(): string {
  const out = join(PACKAGE_ROOT, 'bench', 'out');
  const bin = join(out, 'loop');
  mkdirSync(out, { recursive: true });
  execFileSync('gcc', ['-O2', '-Wall', '-o', bin, join(PACKAGE_ROOT, 'bench', 'loop.c')], { stdio: 'pipe', timeout: 60_000 });
  return bin;
}

function cRelayPath(name: string, spinUs: number): DataPath {
  return {
    name,
    async probe(env) {
      if (!(await commandExists('gcc', env))) return 'gcc not installed (Debian package gcc)';
      return existsSync(join(PACKAGE_ROOT, 'bench', 'loop.c')) ? undefined : 'bench/loop.c missing';
    },
    async setup(env: PathEnv) {
      const { topo, a, b } = env;
      let bin: string;
      try {
        bin = loopBinary();
      } catch (e) {
        throw new PathUnavailable(`cannot compile bench/loop.c: ${(e as Error).message.split('\n')[0]}`);
      }
      const c = await bridgedContainers(env, MTU);
      const dev = topo.lab.ifName('cr');
      const procs: ProcessHandle[] = [];
      for (const h of [a, b]) {
        await topo.exec(h, ['ip', 'tuntap', 'add', 'dev', dev, 'mode', 'tun', 'multi_queue']);
        await topo.exec(h, ['ip', 'link', 'set', 'dev', dev, 'mtu', String(MTU), 'up']);
        await topo.exec(h, ['ip', 'route', 'add', h.slice.overlay, 'dev', dev]);
        await topo.exec(h, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
        procs.push(topo.spawn(h, [bin, 'relay', dev, '86400', String(spinUs)], { env: { LOCAL: h.underlay } }));
      }
      return {
        ...c,
        info: `bench/loop.c relay on a TUN per host (${dev}), one thread, ${spinUs ? `looks again for ${spinUs} µs before sleeping` : 'sleeps as soon as it runs out of packets'}; MTU ${MTU}`,
        teardown: async () => {
          await Promise.all(procs.map((p) => p.stop(3000)));
        },
      };
    },
  };
}

/** The C relay, sleeping as soon as it runs out of packets (as userfan with --busy-poll 0). */
export const cRelay = cRelayPath('c-relay', 0);
/** The C relay looking again for 200 µs before it sleeps (as userfan's default busy poll, simplified). */
export const cRelaySpin = cRelayPath('c-relay-spin', 200);
