// Kernel IP-in-IP, the wire format userfan speaks. On Fan-patched kernels (/proc/sys/net/fan/version)
// tunl0 with the fan map; otherwise a plain ipip device per host with a route for the remote slice.
// Kernels without ipip (no CONFIG_NET_IPIP, as on the machine this was written on) make the path unavailable.
import { existsSync } from 'node:fs';
import { bridgedContainers, type DataPath } from './types.js';

const FAN_VERSION = '/proc/sys/net/fan/version';

export const kernelIpip: DataPath = {
  name: 'kernel-ipip',
  async probe(env) {
    const add = await env.exec(env.ns, ['ip', 'link', 'add', 'name', 'ipprobe', 'type', 'ipip', 'local', '198.18.0.1', 'remote', '198.18.0.2']);
    if (add.code === 0) return undefined;
    const mod = await env.exec(undefined, ['modprobe', '-q', 'ipip']);
    if (mod.code === 0) {
      const again = await env.exec(env.ns, ['ip', 'link', 'add', 'name', 'ipprobe', 'type', 'ipip', 'local', '198.18.0.1', 'remote', '198.18.0.2']);
      if (again.code === 0) return undefined;
    }
    const why = add.stderr.trim().split('\n')[0] || `exit ${add.code}`;
    return `kernel has no ipip (ip link add type ipip: ${why}; modprobe ipip: ${mod.code === 0 ? 'ok' : 'failed'})`;
  },
  async setup(env) {
    const { topo, a, b } = env;
    const c = await bridgedContainers(env, 1480);
    if (existsSync(FAN_VERSION)) {
      // the Fan-patched driver: tunl0 maps the whole overlay
      for (const h of [a, b]) {
        await topo.exec(h, ['ip', 'link', 'change', 'dev', 'tunl0', 'type', 'ipip', 'fan-map', `${h.slice.overlay}:${h.slice.underlay}`]);
        await topo.exec(h, ['ip', 'link', 'set', 'dev', 'tunl0', 'mtu', '1480', 'up']);
        await topo.exec(h, ['ip', 'route', 'add', h.slice.overlay, 'dev', 'tunl0', 'src', h.slice.gateway]);
      }
      return { ...c, info: `tunl0 fan-map ${a.slice.overlay}:${a.slice.underlay}, MTU 1480` };
    }
    const dev = topo.lab.ifName('ip');
    for (const [h, peer] of [
      [a, b],
      [b, a],
    ] as const) {
      await topo.exec(h, ['ip', 'link', 'add', 'name', dev, 'type', 'ipip', 'local', h.underlay, 'remote', peer.underlay, 'ttl', '64', 'dev', h.underlayIf]);
      await topo.exec(h, ['ip', 'link', 'set', 'dev', dev, 'mtu', '1480', 'up']);
      await topo.exec(h, ['ip', 'route', 'add', peer.slice.cidr, 'dev', dev, 'src', h.slice.gateway]);
    }
    return { ...c, info: `ipip ${a.underlay} <-> ${b.underlay}, MTU 1480 (no fan-map on this kernel)` };
  },
};
