// Kernel VXLAN between the two hosts (the Fan's other mode, here point to point), MTU 1450.
import { bridgedContainers, type DataPath } from './types.js';

export const vxlan: DataPath = {
  name: 'vxlan',
  async probe(env) {
    const r = await env.exec(env.ns, ['ip', 'link', 'add', 'name', 'vxprobe', 'type', 'vxlan', 'id', '42', 'dstport', '4789']);
    return r.code === 0 ? undefined : `kernel has no vxlan: ${r.stderr.trim()}`;
  },
  async setup(env) {
    const { topo, a, b } = env;
    const dev = topo.lab.ifName('vx');
    for (const [h, peer] of [
      [a, b],
      [b, a],
    ] as const) {
      await topo.exec(h, ['ip', 'link', 'add', dev, 'type', 'vxlan', 'id', '42', 'remote', peer.underlay, 'local', h.underlay, 'dstport', '4789', 'dev', h.underlayIf]);
      await topo.exec(h, ['ip', 'link', 'set', 'dev', dev, 'mtu', '1450', 'up']);
    }
    const c = await bridgedContainers(env, 1450);
    // the peer's bridge address answers ARP over the VXLAN (a host answers for any local address)
    await topo.exec(a, ['ip', 'route', 'add', b.slice.cidr, 'via', b.slice.gateway, 'dev', dev, 'onlink']);
    await topo.exec(b, ['ip', 'route', 'add', a.slice.cidr, 'via', a.slice.gateway, 'dev', dev, 'onlink']);
    return { ...c, info: `vxlan id 42 dstport 4789 over ${a.underlayIf}, MTU 1450` };
  },
};
