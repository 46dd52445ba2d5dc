/**
 * Adopting a bridge that exists (src/control/bridge-adopt.ts): which addresses, MTUs and ports `up` takes,
 * and the one-line refusals. Host 198.18.0.28 on 250.0.0.0/8 over 198.18.0.0/16 owns 250.0.28.0/24, so its
 * fan address is 250.0.28.1; the fan MTU is 1480 (IP-in-IP) or 1450 (VXLAN) on a 1500 underlay.
 */
import { describe, expect, it } from 'vitest';
import { parseIPv4 } from '../../src/fan/addr.js';
import { Fan, type FanType } from '../../src/fan/fan.js';
import { planAdoption, type ExistingLink } from '../../src/control/bridge-adopt.js';
import { configError } from '../helpers/config-error.js';

const ip = parseIPv4;
const fan = (type: FanType, bridge = 'fan-250-0-28') =>
  new Fan({ net: ip('250.0.0.0'), len: 8 }, { net: ip('198.18.0.0'), len: 16 }, ip('198.18.0.28'), { dhcp: false, off: false, hostReserve: 1, type, bridge });
const link = (addresses: string[], over: Partial<ExistingLink> = {}): ExistingLink => ({
  kind: 'bridge', mtu: 1500, ports: [],
  addresses: addresses.map((a) => ({ address: ip(a.split('/')[0]), len: Number(a.split('/')[1]) })),
  ...over,
});

describe('planAdoption', () => {
  it('IP-in-IP adopts Docker\'s bridge (slice.1/24 at MTU 1500, no port yet): lowers it to the fan MTU, no extra route', () => {
    expect(planAdoption(fan('ipip'), 1480, link(['250.0.28.1/24']))).toEqual({ address: '250.0.28.1/24', mtu: 1480, overlayRoute: false });
    // At or below the fan's MTU, with ports at or below it, and an address outside the overlay: left as it is.
    const ok = link(['250.0.28.1/24', '10.9.0.1/16'], { mtu: 1400, ports: [{ name: 'veth1', mtu: 1480 }, { name: 'veth2', mtu: 1400 }] });
    expect(planAdoption(fan('ipip'), 1480, ok)).toEqual({ address: '250.0.28.1/24', overlayRoute: false });
  });

  it('VXLAN adopts slice.1/8 as it is, and slice.1/24 with the overlay\'s route on the bridge', () => {
    expect(planAdoption(fan('vxlan', 'fan-250'), 1450, link(['250.0.28.1/8'], { mtu: 1450 }))).toEqual({ address: '250.0.28.1/8', overlayRoute: false });
    expect(planAdoption(fan('vxlan'), 1450, link(['250.0.28.1/24']))).toEqual({ address: '250.0.28.1/24', mtu: 1450, overlayRoute: true });
  });

  it('accepts the host-reserve addresses next to slice.1 (a bridge userfan up --keep-bridge left), and no others', () => {
    const reserve3 = new Fan({ net: ip('250.0.0.0'), len: 8 }, { net: ip('198.18.0.0'), len: 16 }, ip('198.18.0.28'), { dhcp: false, off: false, hostReserve: 3, type: 'ipip', bridge: 'fan-250-0-28' });
    expect(planAdoption(reserve3, 1480, link(['250.0.28.1/24', '250.0.28.2/24', '250.0.28.3/24'], { mtu: 1480 }))).toEqual({ address: '250.0.28.1/24', overlayRoute: false });
    expect(configError(() => planAdoption(reserve3, 1480, link(['250.0.28.1/24', '250.0.28.4/24']))).message).toMatch(/holds 250\.0\.28\.4\/24 besides 250\.0\.28\.1\/24/);
    expect(configError(() => planAdoption(reserve3, 1480, link(['250.0.28.1/24', '250.0.28.2/16']))).message).toMatch(/holds 250\.0\.28\.2\/16 besides/);
    // With host-reserve 1 (the default) slice.2 is another host's address, as before.
    expect(configError(() => planAdoption(fan('ipip'), 1480, link(['250.0.28.1/24', '250.0.28.2/24']))).message).toMatch(/holds 250\.0\.28\.2\/24 besides/);
  });

  it('refuses, in one line naming the bridge, what the routing or the MTU cannot live with', () => {
    const cases: [FanType, ExistingLink, RegExp][] = [
      ['ipip', link([], { kind: 'veth' }), /exists on this host as a veth device, not a bridge .*: remove it or name another with --bridge$/],
      ['ipip', link([], { kind: '' }), /as a plain device, not a bridge/],
      ['ipip', link([]), /exists with no fan address to adopt: it holds no address of the fan \(this host's is 250\.0\.28\.1\): give it 250\.0\.28\.1\/24 \(for Docker: docker network create -d bridge --subnet 250\.0\.28\.0\/24 --gateway 250\.0\.28\.1 -o com\.docker\.network\.bridge\.name=fan-250-0-28 …\), or name another bridge with --bridge$/],
      ['ipip', link(['250.0.27.1/24']), /it holds 250\.0\.27\.1\/24, not this host's fan address 250\.0\.28\.1: give it/],
      // The overlay's own prefix would be the TUN's route (File exists); /16 takes other hosts' slices; /25 half the slice.
      ['ipip', link(['250.0.28.1/8']), /holds 250\.0\.28\.1\/8, where an IP-in-IP fan needs 250\.0\.28\.1\/24 \(another prefix takes routes the fan needs\)/],
      ['ipip', link(['250.0.28.1/16']), /needs 250\.0\.28\.1\/24 /],
      ['ipip', link(['250.0.28.1/25']), /needs 250\.0\.28\.1\/24 /],
      ['vxlan', link(['250.0.28.1/16']), /where a VXLAN fan needs 250\.0\.28\.1\/8 or 250\.0\.28\.1\/24 /],
      ['ipip', link(['250.0.28.1/24', '250.0.28.9/24']), /holds 250\.0\.28\.9\/24 besides 250\.0\.28\.1\/24, in the overlay 250\.0\.0\.0\/8: remove it \(ip addr del … dev fan-250-0-28\)$/],
      ['ipip', link(['250.0.28.1/24'], { ports: [{ name: 'vethab12', mtu: 1500 }] }), /has a port vethab12 with MTU 1500, above the fan's 1480: .* \(for Docker: -o com\.docker\.network\.driver\.mtu=1480 on the network\)$/],
      ['vxlan', link(['250.0.28.1/24'], { ports: [{ name: 'veth9', mtu: 1480 }] }), /port veth9 with MTU 1480, above the fan's 1450/],
    ];
    for (const [type, l, rule] of cases) {
      const e = configError(() => planAdoption(fan(type), type === 'vxlan' ? 1450 : 1480, l));
      expect(e.field).toBe('bridge');
      expect(e.value).toBe('fan-250-0-28');
      expect(e.message.split('\n')).toHaveLength(1);
      expect(e.rule).toMatch(rule);
    }
  });
});
