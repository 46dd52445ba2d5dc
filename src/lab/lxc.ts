// LXC system containers inside a lab host (Debian lxc 5, its busybox template, offline), on the host's fan
// bridge, as a user sets one up (tried here; see lxcMissing for what it needs):
//   lxc-create -P DIR -n NAME -t busybox -f CONF   where CONF has
//     lxc.net.0.type = veth, lxc.net.0.link = fan-250-0-28, lxc.net.0.flags = up, lxc.net.0.mtu = 1480,
//     lxc.net.0.ipv4.address = 250.0.28.2/24, lxc.net.0.ipv4.gateway = 250.0.28.1
//   lxc-start -P DIR -n NAME, run in the host's network namespace.
// What it takes inside a lab host:
// - lxc-start checks the bridge in /sys/class/net, so it needs a /sys of the host's namespace (`nsenter
//   --net` keeps the root namespace's: "Failed to attach … to bridge …, bridge interface doesn't exist"), and
//   the cgroup mounts (`ip netns exec` mounts a /sys without them). So it runs as
//   `nsenter --net=/run/netns/HOST unshare -m --propagation private sh -c 'mount --rbind /sys/fs/cgroup T;
//   mount -t sysfs sysfs /sys; mount --move T /sys/fs/cgroup; lxc-start …'`: a private mount namespace,
//   nothing changes in the root's.
// - lxc-attach and lxc-stop reach the container's monitor by an abstract unix socket, which lives in the
//   network namespace lxc-start ran in: they run under `nsenter --net=/run/netns/HOST` too.
// - The busybox template's /etc/init.d/rcS runs udhcpc, whose deconfig flushes a static address: the line
//   is taken out of the container's rcS.
// - Its cgroups go under names of this run (lxc.cgroup.dir.container, .monitor, .monitor.pivot), removed
//   by stop() (killing what still runs in them: cgroups.ts), with the containers and DIR.
import { existsSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from './netns.js';
import { run } from './exec.js';
import type { Box } from './busybox-box.js';
import { removeCgroup } from './cgroups.js';

const TEMPLATE = '/usr/share/lxc/templates/lxc-busybox';
const NEEDS = ['/usr/bin/lxc-create', '/usr/bin/lxc-start', '/usr/bin/lxc-attach', '/usr/bin/lxc-stop', TEMPLATE, '/bin/busybox', '/usr/bin/nsenter', '/usr/bin/unshare'];

/** Why this machine cannot run the LXC tests, or undefined when it can. */
export function lxcMissing(): string | undefined {
  const gone = NEEDS.find((p) => !existsSync(p));
  if (gone) return `${gone} is missing (Debian packages lxc, busybox-static, util-linux; bash .ci/setup installs them)`;
  return undefined;
}

export interface LxcNet {
  /** The bridge in the host's namespace, e.g. fan-250-0-28. */
  link: string;
  /** The container's address with its prefix, e.g. 250.0.28.2/24. */
  address: string;
  gateway: string;
  mtu: number;
}

/** The LXC containers of one lab host, under their own lxcpath DIR. */
export class LxcHost {
  private readonly names: string[] = [];
  private readonly netns: string[];

  /** `ns`: the host's namespace; `dir`: the lxcpath (made here, removed by stop()); `tag`: unique to the run, names its cgroups. */
  constructor(readonly lab: Lab, readonly ns: string, readonly dir: string, readonly tag: string) {
    this.netns = ['nsenter', `--net=/run/netns/${ns}`];
    mkdirSync(dir, { recursive: true });
  }

  private get cgroup(): string {
    return `${this.tag}-lxc`;
  }

  /** Create and start container `name` (unique to the run) on `net`; resolves once it runs, as a busybox Box. */
  async start(name: string, net: LxcNet): Promise<Box> {
    const conf = join(this.dir, `${name}.conf`);
    writeFileSync(conf, [
      'lxc.net.0.type = veth', `lxc.net.0.link = ${net.link}`, 'lxc.net.0.flags = up', 'lxc.net.0.name = eth0',
      `lxc.net.0.veth.pair = ${this.lab.nextIfName('x')}`,
      `lxc.net.0.mtu = ${net.mtu}`, `lxc.net.0.ipv4.address = ${net.address}`, `lxc.net.0.ipv4.gateway = ${net.gateway}`,
      'lxc.apparmor.profile = unconfined',
      `lxc.cgroup.dir.container = ${this.cgroup}/${name}`, `lxc.cgroup.dir.monitor = ${this.cgroup}/${name}.monitor`,
      `lxc.cgroup.dir.monitor.pivot = ${this.cgroup}.pivot`, '',
    ].join('\n'));
    this.names.push(name);
    await run(['lxc-create', '-P', this.dir, '-n', name, '-t', 'busybox', '-f', conf], { timeoutMs: 60_000 });
    const rcS = join(this.dir, name, 'rootfs', 'etc', 'init.d', 'rcS');
    writeFileSync(rcS, readFileSync(rcS, 'utf8').split('\n').filter((l) => !/udhcpc/.test(l)).join('\n'));
    const tmp = join(this.dir, `${name}.cgroup`);
    mkdirSync(tmp);
    const script = 'mount --rbind /sys/fs/cgroup "$1" && mount -t sysfs sysfs /sys && mount --move "$1" /sys/fs/cgroup && shift && exec "$@"';
    const log = join(this.dir, `${name}.log`);
    const r = await run([...this.netns, 'unshare', '-m', '--propagation', 'private', 'sh', '-c', script, 'sh', tmp,
      'lxc-start', '-P', this.dir, '-n', name, '-l', 'INFO', '-o', log], { allowFail: true, timeoutMs: 60_000 });
    if (r.code !== 0) {
      const why = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => /ERROR/.test(l)).slice(-5).join('\n') : '';
      throw new Error(`lxc-start ${name} in ${this.ns} failed (${r.code}): ${r.stderr.trim()}\n${why}`);
    }
    return { name: `lxc ${name}`, address: net.address.split('/')[0], sh: (s) => [...this.netns, 'lxc-attach', '-P', this.dir, '-n', name, '--', 'sh', '-c', s] };
  }

  /** `lxc-info -s` of a container: "RUNNING", "STOPPED", … */
  async state(name: string): Promise<string> {
    const r = await run([...this.netns, 'lxc-info', '-P', this.dir, '-n', name, '-s', '-H'], { allowFail: true, timeoutMs: 10_000 });
    return r.stdout.trim();
  }

  /** Stop (kill) every container, remove DIR and this host's cgroups. Never throws. */
  async stop(): Promise<void> {
    for (const name of this.names.splice(0)) {
      await run([...this.netns, 'lxc-stop', '-P', this.dir, '-n', name, '-k'], { allowFail: true, timeoutMs: 30_000 }).catch(() => undefined);
    }
    rmSync(this.dir, { recursive: true, force: true });
    await removeCgroup(this.cgroup);
    await removeCgroup(`${this.cgroup}.pivot`);
  }
}
