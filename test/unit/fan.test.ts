import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { formatCidr, formatIPv4, parseIPv4, prefixMask } from '../../src/fan/addr.js';
import { bridgeNameFor, Fan } from '../../src/fan/fan.js';
import { parseConfigText, parseFan, parseOverlay, parseUnderlay, type LocalAddress } from '../../src/fan/parse.js';
import { FanTable, NO_FAN, NO_HOST } from '../../src/fan/table.js';
import { configError as err } from '../helpers/config-error.js';

const ip = parseIPv4;
const noIfaces = (): LocalAddress[] => [];
const ifaces = (): LocalAddress[] => [{ iface: 'eth0', address: ip('10.88.3.4'), prefixLen: 16 }, { iface: 'lo', address: ip('127.0.0.1'), prefixLen: 8 }];

describe('the mapping examples in REFERENCE.md', () => {
  it('250.0.0.0/8 over 172.30.0.0/16: 172.30.0.28 owns 250.0.28.0/24; 250.0.27.3 is on 172.30.0.27', () => {
    const fan = parseFan('250.0.0.0/8', '172.30.0.28/16', {}, noIfaces);
    expect(formatCidr(fan.localSlice, fan.sliceLen)).toBe('250.0.28.0/24');
    expect(formatIPv4(fan.underlayHostOf(ip('250.0.27.3'))!)).toBe('172.30.0.27');
    expect(fan.bridge).toBe('fan-250-0-28');
    expect(formatIPv4(fan.hostAddress)).toBe('250.0.28.1');
  });
  it('99.0.0.0/8 over 10.88.0.0/16: 10.88.3.4 owns 99.3.4.0/24; 99.6.7.8 is on 10.88.6.7', () => {
    const fan = parseFan('99.0.0.0/8', '10.88.3.4/16', {}, noIfaces);
    expect(formatCidr(fan.localSlice, fan.sliceLen)).toBe('99.3.4.0/24');
    expect(formatIPv4(fan.underlayHostOf(ip('99.6.7.8'))!)).toBe('10.88.6.7');
  });
  it('100.64.0.0/10 over 10.224.220.0/24: slices are /18; 100.66.200.5 is on 10.224.220.11', () => {
    const fan = parseFan('100.64.0.0/10', '10.224.220.11/24', {}, noIfaces);
    expect(fan.sliceLen).toBe(18);
    expect(formatIPv4(fan.underlayHostOf(ip('100.66.200.5'))!)).toBe('10.224.220.11');
    expect(formatCidr(fan.localSlice, 18)).toBe('100.66.192.0/18');
    const t = new FanTable([fan]);
    expect(formatIPv4(t.underlayHostOf(ip('100.66.200.5')))).toBe('10.224.220.11');
  });
  it('the lab widths: 250.1.0.0/16 over 198.18.7.0/24 gives /24 slices', () => {
    const fan = parseFan('250.1.0.0/16', '198.18.7.9/24', {}, noIfaces);
    expect(formatCidr(fan.localSlice, fan.sliceLen)).toBe('250.1.9.0/24');
    expect(fan.bridge).toBe('fan-250-1-9');
  });
});

/** A random valid fan: overlay /o, underlay /u with o + 32 - u <= 30, and a host address in the underlay. */
const arbFan = fc
  .record({ o: fc.integer({ min: 1, max: 24 }), u: fc.integer({ min: 8, max: 30 }), onet: fc.nat(), unet: fc.integer({ min: 0x01000000, max: 0xdfffffff }), host: fc.nat() })
  .filter(({ o, u }) => o + 32 - u <= 30)
  .map(({ o, u, onet, unet, host }) => {
    const uNet = (unet & prefixMask(u)) >>> 0;
    const span = 2 ** (32 - u);
    const hostBits = 1 + (host % (span - 2)); // neither network nor broadcast
    const first = uNet >>> 24;
    const fixedNet = first === 127 ? (uNet ^ 0x01000000) >>> 0 : uNet;
    return new Fan({ net: (onet & prefixMask(o)) >>> 0, len: o }, { net: fixedNet, len: u }, (fixedNet + hostBits) >>> 0);
  });

describe('mapping properties', () => {
  it('every address of a host\'s slice maps back to that host', () => {
    fc.assert(
      fc.property(arbFan, fc.nat(), (fan, k) => {
        const size = 2 ** fan.shift;
        const addr = (fan.localSlice + (k % size)) >>> 0;
        const t = new FanTable([fan]);
        // The table answers in int32 (see src/fan/table.ts): >>> 0 for the uint32.
        expect(t.underlayHostOf(addr) >>> 0).toBe(fan.localHost);
        expect(t.localHostFor(addr) >>> 0).toBe(fan.localHost);
        expect(t.isLocal(addr)).toBe(true);
        expect(t.isLocal(addr | 0)).toBe(true);
        expect(t.senderOwns(addr | 0, fan.localHost | 0)).toBe(true);
        expect(t.senderOwns(addr, fan.localHost)).toBe(true);
        expect(fan.sliceOf(fan.localHost)).toBe(fan.localSlice);
      }),
      { numRuns: 2000 },
    );
  });
  it('the slice of a host and the host of an address are inverse, for any host of the underlay', () => {
    fc.assert(
      fc.property(arbFan, fc.nat(), fc.nat(), (fan, h, k) => {
        const span = 2 ** (32 - fan.underlay.len);
        const host = (fan.underlay.net + 1 + (h % (span - 2))) >>> 0;
        const slice = fan.sliceOf(host);
        const addr = (slice + (k % 2 ** fan.shift)) >>> 0;
        const t = new FanTable([fan]);
        expect(t.underlayHostOf(addr)).toBe(host | 0);
        expect(t.sliceOfHost(0, host) >>> 0).toBe(slice);
        expect(t.senderOwns(addr, host)).toBe(true);
        expect(t.senderOwns(addr, (host ^ 1) >>> 0)).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });
  it('addresses outside the overlay belong to no fan', () => {
    fc.assert(
      fc.property(arbFan, fc.nat(), (fan, x) => {
        const addr = x >>> 0;
        fc.pre(((addr & fan.overlayMask) >>> 0) !== fan.overlay.net);
        expect(new FanTable([fan]).underlayHostOf(addr)).toBe(NO_FAN);
      }),
    );
  });
});

describe('the table', () => {
  const a = () => parseFan('250.0.0.0/8', '198.18.0.28/16', {}, noIfaces);
  it('refuses the same overlay twice (EEXIST) and changes nothing', () => {
    const t = new FanTable([a()]);
    expect(() => t.add(a())).toThrow(/already up on this host \(EEXIST\)/);
    expect(t.size).toBe(1);
  });
  it('refuses overlapping overlays', () => {
    const t = new FanTable([a()]);
    expect(() => t.add(parseFan('250.1.0.0/16', '198.18.7.9/24', {}, noIfaces))).toThrow(/overlaps the overlay of another fan/);
    t.add(parseFan('251.1.0.0/16', '198.18.7.9/24', {}, noIfaces));
    expect(t.size).toBe(2);
  });
  it('carries at most 256 fans', () => {
    const t = new FanTable();
    for (let i = 0; i < 256; i++) t.add(new Fan({ net: (0x64000000 + i * 0x10000) >>> 0, len: 16 }, { net: ip('198.18.7.0'), len: 24 }, ip('198.18.7.9')));
    expect(() => t.add(new Fan({ net: ip('250.0.0.0'), len: 8 }, { net: ip('198.18.0.0'), len: 16 }, ip('198.18.0.28')))).toThrow(/at most 256 fans/);
  });
  it('answers no host for slices of the underlay network and broadcast addresses', () => {
    const t = new FanTable([a()]);
    expect(t.underlayHostOf(ip('250.0.0.5'))).toBe(NO_HOST);
    expect(t.underlayHostOf(ip('250.255.255.5'))).toBe(NO_HOST);
    expect(formatIPv4(t.underlayHostOf(ip('250.0.1.5')))).toBe('198.18.0.1');
  });
  it('keeps two fans apart', () => {
    const t = new FanTable([a(), parseFan('251.1.0.0/16', '198.18.7.9/24', {}, noIfaces)]);
    expect(formatIPv4(t.underlayHostOf(ip('251.1.4.2')))).toBe('198.18.7.4');
    expect(formatIPv4(t.underlayHostOf(ip('250.0.4.2')))).toBe('198.18.0.4');
    expect(t.isLocal(ip('251.1.9.7'))).toBe(true);
    expect(t.isLocal(ip('250.0.28.7'))).toBe(true);
    expect(t.isLocal(ip('250.0.27.7'))).toBe(false);
  });
});

describe('parsing what users write', () => {
  it('names the field and the rule for a wrong CIDR', () => {
    expect(err(() => parseOverlay('250.0.0.0/33')).message).toBe('overlay "250.0.0.0/33": prefix length 33 is out of range: it must be 0 to 32');
    expect(err(() => parseOverlay('250.0.0/8')).message).toMatch(/^overlay "250.0.0\/8": .*not an IPv4 address/);
    expect(err(() => parseOverlay('250.0.0.0')).message).toMatch(/^overlay "250.0.0.0": must be in CIDR form/);
    expect(err(() => parseOverlay('250.0.0.1/8')).message).toBe('overlay "250.0.0.1/8": host bits are set; an overlay must be a network address, e.g. 250.0.0.0/8');
  });
  it('refuses slices too small, naming both prefixes and the rule', () => {
    const e = err(() => parseFan('250.0.0.0/16', '198.18.0.28/16', {}, noIfaces));
    expect(e.message).toContain('250.0.0.0/16 over 198.18.0.28/16');
    expect(e.message).toContain('slice would be /32');
    expect(e.message).toContain('/30 or shorter');
    expect(() => parseFan('250.0.0.0/14', '198.18.0.28/16', {}, noIfaces)).not.toThrow(); // /30 is the limit
  });
  it('refuses an underlay address that is its network or broadcast address', () => {
    expect(err(() => parseFan('250.0.0.0/8', '198.18.255.255/16', {}, noIfaces)).message).toMatch(/broadcast address of 198.18.0.0\/16/);
  });
  it('resolves eth0/16 and a bare network to this host\'s address', () => {
    expect(formatIPv4(parseUnderlay('eth0/16', ifaces).localHost)).toBe('10.88.3.4');
    expect(formatIPv4(parseUnderlay('10.88.0.0/16', ifaces).localHost)).toBe('10.88.3.4');
    expect(err(() => parseUnderlay('eth9/16', ifaces)).message).toBe('underlay "eth9/16": interface eth9 has no IPv4 address on this host');
    expect(err(() => parseUnderlay('10.99.0.0/16', ifaces)).message).toMatch(/no interface on this host has an address in 10.99.0.0\/16/);
  });
  it('reads the /etc/network/fan format', () => {
    const lines = parseConfigText(['# the fans', '', '250.0.0.0/8 eth0/16 dhcp', '  251.0.0.0/8 198.18.0.28/16 off host-reserve 5 # old', '252.0.0.0/8 198.18.0.28/16 bridge mybr'].join('\n'));
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatchObject({ line: 3, overlay: '250.0.0.0/8', underlay: 'eth0/16', flags: { dhcp: true, off: false, hostReserve: 1 } });
    expect(lines[1]).toMatchObject({ line: 4, flags: { off: true, hostReserve: 5, dhcp: false } });
    expect(lines[2].flags.bridge).toBe('mybr');
    expect(err(() => parseConfigText('250.0.0.0/8 eth0/16 dchp')).message).toMatch(/^line 1 .*unknown flag dchp/);
    expect(err(() => parseConfigText('\n250.0.0.0/8')).message).toMatch(/^line 2 .*expected OVERLAY UNDERLAY/);
  });
  it('keeps host-reserve inside the slice', () => {
    const f = parseFan('250.0.0.0/8', '198.18.0.28/16', { hostReserve: 5 }, noIfaces);
    expect(formatIPv4(f.firstContainerAddress)).toBe('250.0.28.6');
    expect(formatIPv4(f.lastContainerAddress)).toBe('250.0.28.254');
    expect(err(() => parseFan('250.0.0.0/8', '198.18.0.28/16', { hostReserve: 254 }, noIfaces)).field).toBe('host-reserve');
  });
  it('names bridges as fanctl does, and fits Linux\'s 15 characters', () => {
    expect(bridgeNameFor(ip('250.0.28.0'), 24)).toBe('fan-250-0-28');
    expect(bridgeNameFor(ip('250.0.0.0'), 16)).toBe('fan-250-0');
    expect(bridgeNameFor(ip('100.100.100.100'), 30)).toBe('fan-64646464');
  });
});
