/**
 * fanctl 0.12's config lines beside 0.3's (issue 24): `UNDERLAY OVERLAY --dhcp --enable --bridge=NAME
 * --host-reserve=N --type=T` and `OVERLAY UNDERLAY dhcp off bridge NAME host-reserve N`, the CIDRs in either
 * order (the overlay is the shorter prefix), unknown flags refused with one line that names them; and
 * `show`'s Flags column in 0.12's words.
 */
import { describe, expect, it } from 'vitest';
import { KNOWN_FLAGS, parseConfigText } from '../../src/fan/parse.js';
import { flagsText } from '../../src/control/status.js';
import type { FanRecord } from '../../src/control/state.js';
import { DEFAULT_FLAGS, type FanFlags } from '../../src/fan/fan.js';
import { configError as err } from '../helpers/config-error.js';


describe('config lines, 0.12 and 0.3', () => {
  it('reads a 0.12 line: underlay first, --flags', () => {
    const [l] = parseConfigText('198.18.0.0/16 250.0.0.0/8 --dhcp --enable\n');
    expect(l).toMatchObject({ line: 1, overlay: '250.0.0.0/8', underlay: '198.18.0.0/16', flags: { dhcp: true, enable: true, off: false, hostReserve: 1 } });
  });
  it('reads 0.12 options with a value, after = or as the next word', () => {
    const [a, b] = parseConfigText(['198.18.7.28/24 250.1.0.0/16 --bridge=fanb --host-reserve=3 --type=ipip', '198.18.7.28/24 250.1.0.0/16 --bridge fanb --host-reserve 3'].join('\n'));
    for (const l of [a, b]) expect(l.flags).toMatchObject({ bridge: 'fanb', hostReserve: 3, dhcp: false });
    expect(a.flags.type).toBe('ipip');
  });
  it('reads a 0.3 line: overlay first, bare words', () => {
    const [l] = parseConfigText('250.0.0.0/8 198.18.0.28/16 dhcp host-reserve 2 bridge br0 off');
    expect(l).toMatchObject({ overlay: '250.0.0.0/8', underlay: '198.18.0.28/16', flags: { dhcp: true, off: true, hostReserve: 2, bridge: 'br0' } });
    expect(l.flags.enable).toBeUndefined();
  });
  it('takes the CIDRs in either order: the shorter prefix is the overlay', () => {
    const lines = parseConfigText(['250.1.0.0/16 198.18.7.28/24 --enable', '198.18.7.28/24 250.1.0.0/16 dhcp', 'eth0/16 250.0.0.0/8', '250.0.0.0/8 eth0/16'].join('\n'));
    expect(lines.map((l) => [l.overlay, l.underlay])).toEqual([
      ['250.1.0.0/16', '198.18.7.28/24'], ['250.1.0.0/16', '198.18.7.28/24'], ['250.0.0.0/8', 'eth0/16'], ['250.0.0.0/8', 'eth0/16'],
    ]);
  });
  it('refuses two prefixes of one length, and a word that is no CIDR, naming the line', () => {
    expect(err(() => parseConfigText('#\n198.18.0.0/16 250.0.0.0/16')).message).toMatch(/^line 2 ".*": both prefixes are \/16: the overlay must be the shorter one/);
    expect(err(() => parseConfigText('198.18.0.28 250.0.0.0/8 --dhcp')).message).toMatch(/^line 1 .*198\.18\.0\.28 is not ADDRESS\/LENGTH or IFACE\/LENGTH/);
  });
  it('refuses an unknown flag with one line naming it and the known flags', () => {
    const e = err(() => parseConfigText('198.18.0.0/16 250.0.0.0/8 --enable --frobnicate'));
    expect(e.message).toBe(`line 1 "198.18.0.0/16 250.0.0.0/8 --enable --frobnicate": unknown flag --frobnicate; known flags: ${KNOWN_FLAGS}`);
    expect(e.message).not.toContain('\n');
    expect(KNOWN_FLAGS).toMatch(/--dhcp, --enable, --bridge=NAME, --host-reserve=N, --type=ipip\|vxlan, and 0\.3's dhcp, off, bridge NAME, host-reserve N/);
    // 0.12's options only with dashes, 0.3's `off` only bare: neither form is guessed.
    expect(err(() => parseConfigText('198.18.0.0/16 250.0.0.0/8 enable')).rule).toMatch(/^unknown flag enable;/);
    expect(err(() => parseConfigText('198.18.0.0/16 250.0.0.0/8 --off')).rule).toMatch(/^unknown flag --off;/);
    expect(err(() => parseConfigText('198.18.0.0/16 250.0.0.0/8 type ipip')).rule).toMatch(/^unknown flag type;/);
  });
  it('refuses a flag without its value or with a bad one', () => {
    expect(err(() => parseConfigText('198.18.0.0/16 250.0.0.0/8 --bridge=')).rule).toBe('flag --bridge needs a value');
    expect(err(() => parseConfigText('198.18.0.0/16 250.0.0.0/8 --bridge --dhcp')).rule).toBe('flag --bridge needs a value');
    expect(err(() => parseConfigText('250.0.0.0/8 198.18.0.0/16 host-reserve')).rule).toBe('flag host-reserve needs a value');
    expect(err(() => parseConfigText('198.18.0.0/16 250.0.0.0/8 --host-reserve=two')).rule).toBe('host-reserve takes a whole number, not two');
    expect(err(() => parseConfigText('198.18.0.0/16 250.0.0.0/8 --bridge=much-too-long-name')).rule).toMatch(/^bridge name much-too-long-name must be 1-15 characters/);
    expect(err(() => parseConfigText('198.18.0.0/16 250.0.0.0/8 --dhcp=yes')).rule).toBe('flag --dhcp=yes takes no value');
    expect(err(() => parseConfigText('198.18.0.0/16 250.0.0.0/8 --type=gre')).rule).toBe('type gre is not known: it must be ipip or vxlan');
  });
  it('passes --type=vxlan through to the fan (the VXLAN type has landed in FanFlags)', () => {
    expect(parseConfigText('198.18.0.0/16 250.0.0.0/8 --type=vxlan')[0].flags.type).toBe('vxlan');
  });
});

describe("show's Flags column in 0.12's words", () => {
  const rec = (flags: Partial<FanFlags>): FanRecord => ({
    overlay: '250.0.0.0/8', underlay: '198.18.0.0/16', localHost: '198.18.0.28', slice: '250.0.28.0/24', bridge: 'fan-250-0-28', flags: { ...DEFAULT_FLAGS, ...flags },
  });
  it('prints dhcp, bridge=NAME, enable and auto as fanctl 0.12 does, defaults left out', () => {
    expect(flagsText(rec({ dhcp: true }), true)).toBe('dhcp');
    expect(flagsText(rec({ dhcp: true, bridge: 'fan-10' }), true)).toBe('dhcp bridge=fan-10'); // 0.12's own sample line
    expect(flagsText(rec({ dhcp: true, enable: true, auto: true }), true)).toBe('dhcp enable auto');
    expect(flagsText(rec({ hostReserve: 3, type: 'ipip' }), false)).toBe('host-reserve=3 no-nat');
    expect(flagsText(rec({ type: 'vxlan' }), true)).toBe('type=vxlan');
    expect(flagsText(rec({}), true)).toBe('-');
  });
  it('reads back what a config line said', () => {
    const [l] = parseConfigText('198.18.0.0/16 250.0.0.0/8 --dhcp --enable --bridge=fan-10');
    expect(flagsText(rec({ ...l.flags, auto: true }), true)).toBe('dhcp bridge=fan-10 enable auto');
  });
});
