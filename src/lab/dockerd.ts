// A real Docker daemon inside a lab host (docs: ../shared/REFERENCE.md, "Real container runtimes"):
//   nsenter --net=/run/netns/HOST dockerd --config-file DIR/daemon.json --data-root DIR/data
//     --exec-root DIR/exec -H unix://DIR/docker.sock --pidfile DIR/dockerd.pid --storage-driver vfs
//     --iptables=false --ip-masq=false --ip6tables=false --cgroup-parent /<name>
// `nsenter --net`, not `ip netns exec`: the latter mounts a fresh /sys, the cgroup mounts vanish and dockerd
// stops with "Devices cgroup isn't mounted". Nothing is written to the root namespace's firewall.
//
// Everything a dockerd leaves lives under DIR, except: the cgroup directories named after --cgroup-parent,
// the trust key (kept under DIR by the caller's daemon.json key "deprecated-key-path": dockerd 20.10 has no
// flag for it), and the empty directories /run/docker/plugins and /run/containerd/s that dockerd and the
// containerd shims hard-code. stop() removes the containers, stops dockerd (SIGTERM, then SIGKILL), unmounts
// what it left mounted under DIR, and removes DIR, the cgroups (killing what still runs in them, e.g. a
// container whose shim died with dockerd: cgroups.ts) and those directories when it created them.
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from './netns.js';
import { run, type ProcessHandle } from './exec.js';
import type { Box } from './busybox-box.js';
import { removeCgroup } from './cgroups.js';

export const DOCKERD = '/usr/sbin/dockerd';
const BUSYBOX = '/bin/busybox';
/** Hard-coded directories dockerd and the containerd shims make outside --exec-root; removed when we made them (and empty). */
const HARD_CODED_DIRS = ['/run/docker/plugins', '/run/docker', '/run/containerd/s', '/run/containerd'];
/** Those of them that no dockerd had made when one of ours started: every stop() tries to remove them. */
const madeDirs = new Set<string>();

export interface Dockerd {
  readonly dir: string;
  readonly host: string;
  readonly process: ProcessHandle;
  /** `docker -H <host> …`, bounded in time; never throws for a non-zero exit. */
  docker(args: string[], timeoutMs?: number): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** A running container of this dockerd, as a busybox Box (`docker exec NAME sh -c …`). */
  box(container: string, address: string, label?: string): Box;
  stop(): Promise<void>;
}

/** Why this machine cannot run the Docker tests, or undefined when it can. */
export function dockerMissing(): string | undefined {
  if (!existsSync(DOCKERD)) return `${DOCKERD} is missing (Debian package docker.io; bash .ci/setup installs it)`;
  if (!existsSync(BUSYBOX)) return `${BUSYBOX} is missing (Debian package busybox-static; bash .ci/setup installs it)`;
  return undefined;
}

/** A busybox image's root file system as a tar: busybox and a link per applet. */
export async function busyboxRootfsTar(dir: string): Promise<string> {
  const root = join(dir, 'rootfs');
  mkdirSync(join(root, 'bin'), { recursive: true });
  mkdirSync(join(root, 'tmp'), { recursive: true });
  copyFileSync(BUSYBOX, join(root, 'bin', 'busybox'));
  const applets = (await run([BUSYBOX, '--list'])).stdout.split('\n').filter((a) => /^[\w.[-]+$/.test(a) && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', join(root, 'bin', a));
  const tar = join(dir, 'rootfs.tar');
  await run(['tar', '-C', root, '-cf', tar, '.'], { timeoutMs: 30_000 });
  rmSync(root, { recursive: true, force: true });
  return tar;
}

/** Mount points at or under `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4]?.replace(/\\040/g, ' ');
    if (mp && (mp === dir || mp.startsWith(`${dir}/`))) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

/**
 * Start dockerd in `ns` with `daemonJson` as its --config-file and everything else under `dir` (made here,
 * removed by stop(): keep daemon.json elsewhere); resolves once it answers. `name` (unique per run) names its
 * cgroup parent; `args` are more dockerd options (e.g. `--bridge fan-250-0-28 --mtu 1480`).
 */
export async function startDockerd(lab: Lab, ns: string, dir: string, daemonJson: string, name: string, args: string[] = []): Promise<Dockerd> {
  for (const d of HARD_CODED_DIRS) if (!existsSync(d)) madeDirs.add(d);
  const sock = join(dir, 'docker.sock');
  const host = `unix://${sock}`;
  mkdirSync(dir, { recursive: true });
  const proc = lab.spawn(undefined, [
    'nsenter', `--net=/run/netns/${ns}`, DOCKERD, '--config-file', daemonJson, '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'),
    '-H', host, '--pidfile', join(dir, 'dockerd.pid'), '--storage-driver', 'vfs', '--iptables=false', '--ip-masq=false', '--ip6tables=false',
    '--cgroup-parent', `/${name}`, ...args,
  ]);
  const docker = async (args: string[], timeoutMs = 60_000) => {
    const r = await run(['docker', '-H', host, ...args], { allowFail: true, timeoutMs });
    return { code: r.timedOut ? null : r.code, stdout: r.stdout, stderr: r.stderr };
  };
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= (async () => {
    if (proc.running) {
      const ids = (await docker(['ps', '-aq'], 15_000)).stdout.split(/\s+/).filter(Boolean);
      if (ids.length) await docker(['rm', '-f', ...ids], 60_000);
      await proc.stop(20_000);
    }
    for (const mp of mountsUnder(dir)) await run(['umount', '-l', mp], { allowFail: true });
    rmSync(dir, { recursive: true, force: true });
    await removeCgroup(name); // with any container process its dead shim left running
    for (const d of HARD_CODED_DIRS.filter((x) => madeDirs.has(x))) {
      try {
        rmdirSync(d);
        madeDirs.delete(d);
      } catch {
        /* not empty: another dockerd still uses it (its stop() tries again) */
      }
    }
  })());
  const box = (container: string, address: string, label = `docker ${container} in ${ns}`): Box => ({ name: label, address, sh: (script) => ['docker', '-H', host, 'exec', container, 'sh', '-c', script] });
  const d: Dockerd = { dir, host, process: proc, docker, box, stop };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (!proc.running) {
      await stop();
      throw new Error(`dockerd in ${ns} exited (${proc.exitCode}) before answering:\n${proc.tail()}`);
    }
    if ((await docker(['version', '--format', '{{.Server.Version}}'], 5000)).code === 0) return d;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`dockerd in ${ns} did not answer within 60 s:\n${proc.tail()}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
