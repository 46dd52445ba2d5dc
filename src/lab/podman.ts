// A real podman (Debian's 4.3, CNI network backend) for one lab host, everything of it under one directory:
//   nsenter --net=/run/netns/HOST podman --root DIR/root --runroot DIR/run --tmpdir DIR/tmp
//     --storage-driver vfs --cgroup-manager cgroupfs --events-backend file …
// with CONTAINERS_CONF=DIR/containers.conf naming the CNI backend, its plugin directories and its
// configuration directory. `nsenter --net`, not `ip netns exec` (which mounts a fresh /sys, and runc then
// finds no cgroup mounts). Containers run with `--cgroup-parent /<name>` and with nofile/nproc limits this
// process may set: podman's rootful defaults (1048576) need CAP_SYS_RESOURCE, which this machine's root
// lacks (runc: "error setting rlimit type 7: operation not permitted").
//
// What podman leaves outside DIR: /run/netns/netns-<uuid> (one per running container, gone with it),
// /var/lib/cni/results (libcni's result cache; emptied by DEL) and /var/lib/containers/cache (the blob
// info cache of `podman import`), and the cgroups under /<name>. stop() removes the containers, what is
// mounted under DIR, DIR, the cgroups, and those directories when no podman had made them before.
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './exec.js';
import { mountsUnder } from './dockerd.js';

export const PODMAN = '/usr/bin/podman';
const CNI_PLUGINS = '/usr/lib/cni';
/** Directories podman and libcni make outside DIR, deepest first; removed when we made them (and empty). */
const OUTSIDE = ['/var/lib/cni/results', '/var/lib/cni', '/var/lib/containers/cache', '/var/lib/containers'];
const made = new Set<string>();

/** Why this machine cannot run the podman tests, or undefined when it can. */
export function podmanMissing(): string | undefined {
  if (!existsSync(PODMAN)) return `${PODMAN} is missing (Debian package podman; bash .ci/setup installs it)`;
  if (!existsSync(`${CNI_PLUGINS}/bridge`) || !existsSync(`${CNI_PLUGINS}/host-local`)) return `${CNI_PLUGINS}/bridge or host-local is missing (Debian package containernetworking-plugins)`;
  if (!existsSync('/bin/busybox')) return '/bin/busybox is missing (Debian package busybox-static)';
  return undefined;
}

export interface PodmanHost {
  readonly dir: string;
  readonly ns: string;
  /** `podman …` in the host's network namespace, bounded in time; never throws for a non-zero exit. */
  podman(args: string[], timeoutMs?: number): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** `podman run -d` with the lab's limits and cgroup parent; resolves the container's name. */
  runDetached(name: string, image: string, network: string, command: string[]): Promise<string>;
  stop(): Promise<void>;
}

export interface PodmanOptions {
  /** Plugin directories, searched in order (the userfan launcher's, then /usr/lib/cni). */
  pluginDirs: string[];
  /** The CNI configuration directory (the .conflist files). */
  configDir: string;
  /** Unique per run: names the cgroup parent. */
  name: string;
}

function removeCgroupTree(name: string): void {
  let roots: string[] = [];
  try {
    roots = readdirSync('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c));
  } catch {
    return;
  }
  const rmTree = (d: string) => {
    let kids: string[] = [];
    try {
      kids = readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(d, e.name));
    } catch {
      return;
    }
    for (const k of kids) rmTree(k);
    try {
      rmdirSync(d);
    } catch {
      /* still in use, or not ours */
    }
  };
  for (const r of [...roots, '/sys/fs/cgroup']) rmTree(join(r, name));
}

/** A podman for lab host namespace `ns`, with its storage, state and configuration under `dir`. */
export function podmanHost(ns: string, dir: string, o: PodmanOptions): PodmanHost {
  for (const d of OUTSIDE) if (!existsSync(d)) made.add(d);
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const conf = join(dir, 'containers.conf');
  writeFileSync(conf, [
    '[network]', 'network_backend = "cni"', `cni_plugin_dirs = ${JSON.stringify(o.pluginDirs)}`, `network_config_dir = ${JSON.stringify(o.configDir)}`,
    '[engine]', 'cgroup_manager = "cgroupfs"', 'events_logger = "file"', `events_logfile_path = ${JSON.stringify(join(dir, 'events.log'))}`,
    `tmp_dir = ${JSON.stringify(join(dir, 'tmp'))}`, '',
  ].join('\n'));
  const base = ['nsenter', `--net=/run/netns/${ns}`, PODMAN, '--root', join(dir, 'root'), '--runroot', join(dir, 'run'), '--storage-driver', 'vfs'];
  const podman = async (args: string[], timeoutMs = 60_000) => {
    const r = await run([...base, ...args], { allowFail: true, timeoutMs, env: { CONTAINERS_CONF: conf } });
    return { code: r.timedOut ? null : r.code, stdout: r.stdout, stderr: r.stderr };
  };
  const runDetached = async (name: string, image: string, network: string, command: string[]) => {
    const r = await podman(['run', '-d', '--name', name, '--network', network, '--cgroup-parent', `/${o.name}`, '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', image, ...command]);
    if (r.code !== 0) throw new Error(`podman run ${name} in ${ns} failed (${r.code}): ${r.stderr.trim()}`);
    return name;
  };
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= (async () => {
    if (existsSync(join(dir, 'root'))) await podman(['rm', '-a', '-f', '-t', '0'], 60_000);
    for (const mp of mountsUnder(dir)) await run(['umount', '-l', mp], { allowFail: true });
    rmSync(dir, { recursive: true, force: true });
    removeCgroupTree(o.name);
    for (const d of OUTSIDE.filter((x) => made.has(x))) {
      try {
        if (d === '/var/lib/containers/cache') rmSync(join(d, 'blob-info-cache-v1.boltdb'), { force: true });
        rmdirSync(d);
        made.delete(d);
      } catch {
        /* not empty: another podman still uses it (its stop() tries again), or gone */
      }
    }
  })());
  return { dir, ns, podman, runDetached, stop };
}
