/**
 * A container that asks the fan's dnsmasq for an address with busybox udhcpc (options.test.ts for IP-in-IP,
 * vxlan-host.test.ts for VXLAN): the script udhcpc runs on a lease, and the request itself.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import type { Container, FanTopology, Host } from '../../src/lab/topology.js';

export type Lease = Record<string, string>;

/** Writes the script udhcpc runs on a lease: print the lease, configure the container with it (and its MTU, if asked). */
export function writeUdhcpcScript(path: string, setMtu = false): void {
  writeFileSync(path, [
    '#!/bin/sh',
    '[ "$1" = bound ] || exit 0',
    'echo "lease ip=$ip mask=$mask router=$router mtu=$mtu serverid=$serverid"',
    'ip addr add "$ip/$mask" dev "$interface"',
    ...(setMtu ? ['ip link set dev "$interface" mtu "$mtu"'] : []),
    'ip route add default via "$router" dev "$interface"',
    '',
  ].join('\n'));
  chmodSync(path, 0o755);
}

/** A container on `bridge` of `host` with no address, which then asks for one with udhcpc (optionally a given one). */
export async function dhcpContainer(topo: FanTopology, host: Host, bridge: string, script: string, request?: string): Promise<{ c: Container; lease: Lease }> {
  const c = await topo.addContainer(host, { bridge, address: '192.0.2.1', prefixLen: 32, gateway: '' });
  await topo.exec(c, ['ip', 'addr', 'flush', 'dev', c.ifname]);
  const r = await topo.exec(c, ['busybox', 'udhcpc', '-i', c.ifname, '-f', '-q', '-n', '-t', '8', '-T', '1', '-O', 'mtu', '-s', script, ...(request ? ['-r', request] : [])], { timeoutMs: 20_000, allowFail: true });
  const line = r.stdout.split('\n').find((l) => l.startsWith('lease '));
  if (!line) throw new Error(`no DHCP lease for ${c.name} (exit ${r.code}):\n${r.stdout}${r.stderr}`);
  const lease = Object.fromEntries(line.slice(6).split(' ').map((kv) => kv.split('=') as [string, string]));
  c.address = lease.ip;
  return { c, lease };
}
