// Plain routed veth, no encapsulation: the ceiling. Each host routes the other's slice via its underlay address.
import { bridgedContainers, type DataPath } from './types.js';

export const veth: DataPath = {
  name: 'veth',
  async probe() {
    return undefined;
  },
  async setup(env) {
    const { topo, a, b } = env;
    const c = await bridgedContainers(env, 1500);
    await topo.exec(a, ['ip', 'route', 'add', b.slice.cidr, 'via', b.underlay, 'dev', a.underlayIf]);
    await topo.exec(b, ['ip', 'route', 'add', a.slice.cidr, 'via', a.underlay, 'dev', b.underlayIf]);
    return { ...c, info: `routed: ${b.slice.cidr} via ${b.underlay}, MTU 1500` };
  },
};
