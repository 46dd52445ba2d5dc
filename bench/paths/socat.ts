// socat TUN over UDP: the simplest userspace tunnel (one packet per read/sendto).
import type { ProcessHandle } from '../../src/lab/exec.js';
import { bridgedContainers, commandExists, type DataPath } from './types.js';

const PORT = '5555';
const TUN_MTU = 1472; // 1500 on the underlay with 28 bytes of UDP/IPv4

export const socat: DataPath = {
  name: 'socat',
  async probe(env) {
    return (await commandExists('socat', env)) ? undefined : 'socat not installed (Debian package socat)';
  },
  async setup(env) {
    const { topo, a, b } = env;
    const dev = topo.lab.ifName('so');
    const procs: ProcessHandle[] = [];
    for (const [h, peer] of [
      [a, b],
      [b, a],
    ] as const) {
      procs.push(
        topo.spawn(h, [
          'socat', '-b', '65536',
          `TUN:${h.slice.gateway}/32,tun-name=${dev},iff-no-pi,tun-type=tun,up`,
          `UDP:${peer.underlay}:${PORT},bind=${h.underlay}:${PORT}`,
        ]),
      );
    }
    // socat has no ready message: wait for the TUN device to exist in both hosts
    for (const [i, h] of [a, b].entries()) {
      const until = Date.now() + 10_000;
      for (;;) {
        const r = await topo.exec(h, ['ip', 'link', 'show', 'dev', dev], { allowFail: true });
        if (r.code === 0) break;
        if (!procs[i].running || Date.now() > until) {
          throw new Error(`socat did not create ${dev} in host ${h.name}\n${procs[i].tail()}`);
        }
        await new Promise((res) => setTimeout(res, 50));
      }
      await topo.exec(h, ['ip', 'link', 'set', 'dev', dev, 'mtu', String(TUN_MTU), 'up']);
    }
    const c = await bridgedContainers(env, TUN_MTU);
    await topo.exec(a, ['ip', 'route', 'add', b.slice.cidr, 'dev', dev, 'src', a.slice.gateway]);
    await topo.exec(b, ['ip', 'route', 'add', a.slice.cidr, 'dev', dev, 'src', b.slice.gateway]);
    return {
      ...c,
      info: `socat -b 65536 TUN <-> UDP ${PORT}, MTU ${TUN_MTU}`,
      teardown: async () => {
        await Promise.all(procs.map((p) => p.stop(3000)));
      },
    };
  },
};
