/**
 * The VXLAN type's wire steps (src/wire/vxlan.ts) against frames built here byte by byte from RFC 7348,
 * RFC 826 and IEEE 802.3, and the Fan rule worked out by hand: 250.0.0.0/8 over 198.18.0.0/16, this host
 * 198.18.0.28 owns 250.0.28.0/24.
 */
import { describe, expect, it } from 'vitest';
import { parseIPv4 } from '../../src/fan/addr.js';
import { Fan } from '../../src/fan/fan.js';
import { FanTable } from '../../src/fan/table.js';
import { Drop } from '../../src/wire/drops.js';
import { defaultVni, putVxlan, vxlanDecap, vxlanRoute, vxlanSourcePort } from '../../src/wire/vxlan.js';

const ip = parseIPv4;
const fans = new FanTable([new Fan({ net: ip('250.0.0.0'), len: 8 }, { net: ip('198.18.0.0'), len: 16 }, ip('198.18.0.28'), { dhcp: false, off: false, hostReserve: 1, type: 'vxlan' })]);
const VNI = 16384000;
const bytes = (s: string) => s.split('.').map(Number);

/** An Ethernet frame: IPv4 (a 20-byte header, no payload) or ARP (RFC 826, IPv4 over Ethernet). */
function frame(kind: 'ipv4' | 'arp' | 'ipv6', src: string, dst: string, srcMac = [2, 0, 0, 0, 0, 0x27]): number[] {
  const eth = [2, 0, 0, 0, 0, 0x28, ...srcMac];
  if (kind === 'ipv6') return [...eth, 0x86, 0xdd, ...new Array(40).fill(0)];
  if (kind === 'arp') return [...eth, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1, ...srcMac, ...bytes(src), 0, 0, 0, 0, 0, 0, ...bytes(dst)];
  return [...eth, 0x08, 0x00, 0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, ...bytes(src), ...bytes(dst)];
}

describe('VXLAN wire', () => {
  it('the Fan VNI is the overlay >> 8 (LXD: 240.0.0.0/8 is 15728640)', () => {
    expect(defaultVni(ip('250.0.0.0'))).toBe(VNI);
    expect(defaultVni(ip('240.0.0.0'))).toBe(15728640);
  });

  it('writes the header RFC 7348 has: I flag, reserved zero, the VNI in bytes 4-6', () => {
    const b = new Uint8Array(8).fill(0xee);
    putVxlan(b, 0, VNI);
    expect([...b]).toEqual([0x08, 0, 0, 0, 0xfa, 0x00, 0x00, 0]);
  });

  it('routes an IPv4 frame by its destination and an ARP frame by its target address', () => {
    const route = new Int32Array(2);
    for (const [f, host] of [[frame('ipv4', '250.0.28.3', '250.0.27.9'), '198.18.0.27'], [frame('arp', '250.0.28.3', '250.0.200.1'), '198.18.0.200']] as const) {
      const b = Uint8Array.from(f);
      expect(vxlanRoute(b, 0, b.length, fans, route)).toBe(0);
      expect([route[0] >>> 0, route[1] >>> 0]).toEqual([ip(host), ip('198.18.0.28')]);
    }
  });

  it('drops on the way out: another ethertype, a short frame, outside the fan, this host', () => {
    const route = new Int32Array(2);
    const cases: [number[], number][] = [
      [frame('ipv6', '', ''), Drop['tx-not-ipv4-or-arp']],
      [frame('arp', '250.0.28.3', '250.0.27.1').slice(0, 30), Drop['tx-malformed']],
      [frame('ipv4', '250.0.28.3', '10.1.2.3'), Drop['tx-no-fan']],
      [frame('arp', '250.0.28.3', '250.0.28.1'), Drop['tx-local-destination']],
    ];
    for (const [f, want] of cases) expect(vxlanRoute(Uint8Array.from(f), 0, f.length, fans, route)).toBe(want);
  });

  it('takes a datagram from the host that owns the inner source, for this host, and gives the frame', () => {
    for (const f of [frame('ipv4', '250.0.27.3', '250.0.28.3'), frame('arp', '250.0.27.3', '250.0.28.1')]) {
      const b = Uint8Array.from([0x08, 0, 0, 0, 0xfa, 0, 0, 0, ...f]);
      expect(vxlanDecap(b, 0, b.length, fans, VNI, ip('198.18.0.27') | 0)).toBe(8);
    }
  });

  it('drops on the way in, each under its own reason', () => {
    const ok = frame('ipv4', '250.0.27.3', '250.0.28.3');
    const hdr = [0x08, 0, 0, 0, 0xfa, 0, 0, 0];
    const cases: [string, number[], string?][] = [
      ['rx-vxlan-truncated', [...hdr, ...ok.slice(0, 10)]],
      ['rx-vxlan-flags', [0x0c, 0, 0, 0, 0xfa, 0, 0, 0, ...ok]],
      ['rx-vxlan-flags', [0x08, 0, 0, 0, 0xfa, 0, 0, 1, ...ok]],
      ['rx-vxlan-vni', [0x08, 0, 0, 0, 0xfa, 0, 1, 0, ...ok]],
      ['rx-vxlan-ethertype', [...hdr, ...frame('ipv6', '', '')]],
      ['rx-vxlan-bad-mac', [...hdr, ...frame('ipv4', '250.0.27.3', '250.0.28.3', [1, 0, 0x5e, 0, 0, 1])]],
      ['rx-vxlan-bad-mac', [...hdr, ...frame('ipv4', '250.0.27.3', '250.0.28.3', [0, 0, 0, 0, 0, 0])]],
      ['rx-truncated-inner', [...hdr, ...ok.slice(0, 30)]],
      ['rx-spoofed-source', [...hdr, ...frame('ipv4', '250.0.26.3', '250.0.28.3')]],
      ['rx-spoofed-source', [...hdr, ...frame('arp', '250.0.26.3', '250.0.28.1')]],
      ['rx-not-local', [...hdr, ...frame('ipv4', '250.0.27.3', '250.0.29.3')]],
      ['rx-foreign-overlay', [...hdr, ...frame('ipv4', '250.0.27.3', '10.0.0.1')]],
      ['rx-from-self', [...hdr, ...ok], '198.18.0.28'],
      ['rx-outer-source-not-underlay', [...hdr, ...ok], '192.0.2.1'],
    ];
    for (const [reason, d, from = '198.18.0.27'] of cases) {
      const b = Uint8Array.from(d);
      expect(vxlanDecap(b, 0, b.length, fans, VNI, ip(from) | 0), reason).toBe(-Drop[reason as keyof typeof Drop]);
    }
  });

  it('gives each inner flow one outer source port in 32768-60999, and different flows different ports', () => {
    /** A TCP/IPv4 frame (20-byte headers, then `payload` bytes) from sport to dport, with `frag` in the flags/offset field. */
    const tcp = (sport: number, dport: number, payload = 0, frag = 0x4000) => {
      const f = frame('ipv4', '250.0.28.3', '250.0.27.3');
      f[14 + 9] = 6;
      f[14 + 6] = frag >>> 8;
      f[14 + 7] = frag & 0xff;
      return Uint8Array.from([...f, sport >>> 8, sport & 0xff, dport >>> 8, dport & 0xff, ...new Array(16 + payload).fill(7)]);
    };
    const port = (b: Uint8Array) => vxlanSourcePort(b, 0, b.length);
    // One flow, any segment of it: one port (the payload and its length do not count).
    expect(port(tcp(40000, 5201, 1000))).toBe(port(tcp(40000, 5201)));
    // Linux's connect() takes even ports: flows to one server differing only there still spread.
    const ports = [...Array(64).keys()].map((i) => port(tcp(40000 + 2 * i, 5201)));
    for (const p of ports) {
      expect(p).toBeGreaterThanOrEqual(32768);
      expect(p).toBeLessThanOrEqual(60999);
    }
    expect(new Set(ports).size, 'distinct ports of 64 flows').toBeGreaterThan(56);
    // Over a receiver's two sockets (the port's low bit for a 2-way split), both halves get a fair share.
    const odd = ports.filter((p) => p & 1).length;
    expect(odd).toBeGreaterThan(16);
    expect(odd).toBeLessThan(48);
    // The reply direction is another flow; a fragment (no ports) and ARP get a port too, in the range.
    expect(port(tcp(5201, 40000))).not.toBe(port(tcp(40000, 5201)));
    for (const b of [tcp(40000, 5201, 0, 0x2000), Uint8Array.from(frame('arp', '250.0.28.3', '250.0.27.1')), Uint8Array.from(frame('ipv6', '', ''))]) {
      expect(port(b)).toBeGreaterThanOrEqual(32768);
      expect(port(b)).toBeLessThanOrEqual(60999);
    }
    // A frame cut short of its ports is hashed on what it has: the bytes past its length do not count.
    const [x, y] = [tcp(40000, 5201), tcp(40002, 5203)];
    expect(vxlanSourcePort(x, 0, 14 + 20 + 2)).toBe(vxlanSourcePort(y, 0, 14 + 20 + 2));
  });
});
