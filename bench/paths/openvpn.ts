// OpenVPN point to point without crypto (userspace TUN + UDP), as a user might set it up instead of a Fan.
// Tunnel addresses are the slices' .1; each host routes the other's slice via the peer's .1.
import type { ProcessHandle } from '../../src/lab/exec.js';
import { bridgedContainers, commandExists, type DataPath } from './types.js';

const PORT = '1194';
const TUN_MTU = 1472; // + 28 bytes UDP/IPv4, no crypto overhead: 1500 on the underlay
const BUF = String(4 * 1024 * 1024); // REFERENCE.md: bigger buffers help it a little; give it its best

export const openvpn: DataPath = {
  name: 'openvpn',
  async probe(env) {
    return (await commandExists('openvpn', env)) ? undefined : 'openvpn not installed (Debian package openvpn)';
  },
  async setup(env) {
    const { topo, a, b } = env;
    const dev = topo.lab.ifName('ov');
    const procs: ProcessHandle[] = [];
    for (const [h, peer] of [
      [a, b],
      [b, a],
    ] as const) {
      const p = topo.spawn(h, [
        'openvpn', '--dev-type', 'tun', '--dev', dev, '--proto', 'udp',
        '--local', h.underlay, '--lport', PORT, '--remote', peer.underlay, '--rport', PORT,
        '--ifconfig', h.slice.gateway, peer.slice.gateway,
        '--cipher', 'none', '--data-ciphers', 'none', '--auth', 'none',
        '--tun-mtu', String(TUN_MTU), '--mssfix', '0',
        '--sndbuf', BUF, '--rcvbuf', BUF, '--txqueuelen', '1000',
        '--ping', '1', '--verb', '3', '--mute-replay-warnings',
      ]);
      procs.push(p);
    }
    for (const p of procs) await p.waitForLine(/Initialization Sequence Completed/, 15_000);
    const c = await bridgedContainers(env, TUN_MTU);
    await topo.exec(a, ['ip', 'route', 'add', b.slice.cidr, 'via', b.slice.gateway, 'dev', dev]);
    await topo.exec(b, ['ip', 'route', 'add', a.slice.cidr, 'via', a.slice.gateway, 'dev', dev]);
    return {
      ...c,
      info: `openvpn p2p udp, cipher/auth none, tun-mtu ${TUN_MTU}, 4 MiB socket buffers`,
      teardown: async () => {
        await Promise.all(procs.map((p) => p.stop(3000)));
      },
    };
  },
};
