// The cgroups a container runtime made for one lab run, under a name of that run (dockerd's --cgroup-parent,
// LXC's lxc.cgroup.dir.*): whatever still runs in them is this run's (a container whose shim died with its
// dockerd keeps running, reparented to init), so it is killed, and the directories go, deepest first.
import { readdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Every cgroup hierarchy's root: /sys/fs/cgroup (cgroup2 alone) and each v1 controller and the unified one under it. */
function cgroupRoots(): string[] {
  const roots = ['/sys/fs/cgroup'];
  try {
    for (const e of readdirSync('/sys/fs/cgroup', { withFileTypes: true })) if (e.isDirectory()) roots.push(join('/sys/fs/cgroup', e.name));
  } catch {
    /* no cgroups mounted */
  }
  return roots;
}

/** The cgroup directories, in any hierarchy, right under its root whose names start with `prefix`. */
export function cgroupsStartingWith(prefix: string): string[] {
  return cgroupRoots().flatMap((r) => readdirSync(r, { withFileTypes: true }).filter((e) => e.isDirectory() && e.name.startsWith(prefix)).map((e) => join(r, e.name)));
}

/** `dir` and the directories under it, deepest first; [] when it is not there. */
function tree(dir: string): string[] {
  try {
    if (!statSync(dir).isDirectory()) return [];
  } catch {
    return [];
  }
  const below = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).flatMap((e) => tree(join(dir, e.name)));
  return [...below, dir];
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** The pids in cgroup `name` (relative to each hierarchy's root) and below it. */
export function cgroupPids(name: string): number[] {
  const pids = new Set<number>();
  for (const root of cgroupRoots()) {
    for (const d of tree(join(root, name))) {
      try {
        for (const p of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) pids.add(Number(p));
      } catch {
        /* gone meanwhile */
      }
    }
  }
  return [...pids];
}

/** Kill what still runs in cgroup `name` (SIGKILL, waiting up to 5 s), then remove its directories in every hierarchy. */
export async function removeCgroup(name: string): Promise<void> {
  if (!/^[\w.-]+(\/[\w.-]+)*$/.test(name) || name.startsWith('.')) throw new Error(`removeCgroup: refusing ${JSON.stringify(name)}`);
  let pids = cgroupPids(name);
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + 5000;
  while ((pids = pids.filter(alive)).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  for (const root of cgroupRoots()) {
    for (const d of tree(join(root, name))) {
      try {
        rmdirSync(d);
      } catch {
        /* still in use: another hierarchy's copy may go, this one stays */
      }
    }
  }
}
