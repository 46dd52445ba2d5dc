/**
 * The neighbour copy behind TX GSO (src/underlay/neighbours.ts): which ARP entries it takes, and what a
 * lookup answers: the MAC words the addon sends to, "unknown" (0) for anything else, and exactly one
 * "through the kernel" per neighbour after each markProbes.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseIPv4 } from '../../src/fan/addr.js';
import { macText, macWords, MAX_NEIGHBOURS, NeighbourTable, parseArpTable, sharingSlot, type Neighbour, type UnderlayLink } from '../../src/underlay/neighbours.js';

const HEAD = 'IP address       HW type     Flags       HW address            Mask     Device\n';
const link: UnderlayLink = { iface: 'eth0', ifindex: 7, net: parseIPv4('172.30.0.0'), len: 16, local: parseIPv4('172.30.0.28') };

describe('parseArpTable', () => {
  it('keeps complete Ethernet entries on the underlay interface inside its network, and nothing else', () => {
    const text = HEAD + [
      '172.30.0.27      0x1         0x2         52:54:00:aa:bb:cc     *        eth0', // kept
      '172.30.5.1       0x1         0x6         52:54:00:AA:BB:DD     *        eth0', // kept (permanent too), MAC lower-cased
      '172.30.0.26      0x1         0x0         00:00:00:00:00:00     *        eth0', // incomplete (ARP unanswered)
      '172.30.0.25      0x1         0x2         52:54:00:aa:bb:ce     *        eth1', // another interface
      '10.0.0.1         0x1         0x2         52:54:00:aa:bb:cf     *        eth0', // outside the underlay (a gateway)
      '172.30.0.28      0x1         0x2         52:54:00:aa:bb:d0     *        eth0', // this host's own address
      '172.30.0.24      0x20        0x2         52:54:00:aa:bb:d1     *        eth0', // not Ethernet (InfiniBand)
      'garbage',
    ].join('\n');
    expect(parseArpTable(text, [link])).toEqual([
      { address: parseIPv4('172.30.0.27'), ifindex: 7, mac: '52:54:00:aa:bb:cc' },
      { address: parseIPv4('172.30.5.1'), ifindex: 7, mac: '52:54:00:aa:bb:dd' },
    ]);
  });
});

describe('NeighbourTable', () => {
  const n = (ip: string, mac: string, ifindex = 7): Neighbour => ({ address: parseIPv4(ip), ifindex, mac });
  const ll = new Int32Array(2);

  it('answers the interface and MAC words for a known address, 0 for an unknown one', () => {
    const t = new NeighbourTable();
    expect(t.replace([n('172.30.0.27', 'fe:dc:ba:98:76:54'), n('250.1.2.3', '02:00:00:00:00:01', 9)])).toBe(true);
    expect(t.size).toBe(2);
    expect(t.lookup(parseIPv4('172.30.0.27'), ll, 0)).toBe(7);
    expect(macText(ll[0], ll[1])).toBe('fe:dc:ba:98:76:54');
    expect(t.lookup(parseIPv4('250.1.2.3') | 0, ll, 0)).toBe(9); // int32 (negative) as the data path passes it
    expect(macText(ll[0], ll[1])).toBe('02:00:00:00:00:01');
    expect(t.lookup(parseIPv4('172.30.0.26'), ll, 0)).toBe(0);
  });

  it('gives each neighbour exactly one "through the kernel" per markProbes, to whichever lookup comes first', () => {
    const t = new NeighbourTable();
    t.replace([n('172.30.0.27', '52:54:00:00:00:01'), n('172.30.0.26', '52:54:00:00:00:02')]);
    t.markProbes();
    const a = parseIPv4('172.30.0.27');
    expect([t.lookup(a, ll, 0), t.lookup(a, ll, 0), t.lookup(a, ll, 0)]).toEqual([0, 7, 7]);
    expect(t.lookup(parseIPv4('172.30.0.26'), ll, 0)).toBe(0);
    t.markProbes();
    expect([t.lookup(a, ll, 0), t.lookup(a, ll, 0)]).toEqual([0, 7]);
  });

  it('is not rewritten when nothing changed; a changed MAC replaces the old one; a removed address is unknown', () => {
    const t = new NeighbourTable();
    t.replace([n('172.30.0.27', '52:54:00:00:00:01')]);
    const version = t.words[0];
    expect(t.replace([n('172.30.0.27', '52:54:00:00:00:01')])).toBe(false);
    expect(t.words[0]).toBe(version);
    expect(t.replace([n('172.30.0.27', '52:54:00:00:00:09')])).toBe(true);
    expect(t.words[0] % 2).toBe(0);
    expect(t.lookup(parseIPv4('172.30.0.27'), ll, 0)).toBe(7);
    expect(macText(ll[0], ll[1])).toBe('52:54:00:00:00:09');
    t.replace([]);
    expect([t.size, t.lookup(parseIPv4('172.30.0.27'), ll, 0)]).toEqual([0, 0]);
  });

  it('flags a lookup that found no entry, for the main thread to copy the kernel\'s table at once; hits and probes do not', () => {
    const t = new NeighbourTable();
    const a = parseIPv4('172.30.0.27');
    expect(t.takeMissed()).toBe(false);
    expect(t.lookup(a, ll, 0)).toBe(0); // empty table: a miss
    expect([t.takeMissed(), t.takeMissed()]).toEqual([true, false]);
    t.replace([n('172.30.0.27', '52:54:00:00:00:01')]);
    t.markProbes();
    expect([t.lookup(a, ll, 0), t.lookup(a, ll, 0)]).toEqual([0, 7]); // the probe, then a hit
    expect(t.takeMissed()).toBe(false);
    expect(t.lookup(parseIPv4('172.30.0.26'), ll, 0)).toBe(0);
    expect(t.takeMissed()).toBe(true);
  });

  it('wakes a waiting main thread at the first miss, at once if one came before the wait, and not for hits', async () => {
    const t = new NeighbourTable();
    t.replace([n('172.30.0.27', '52:54:00:00:00:01')]);
    let woke = 0;
    const waiting = t.whenMissed().then(() => woke++);
    expect(t.lookup(parseIPv4('172.30.0.27'), ll, 0)).toBe(7);
    await new Promise((r) => setTimeout(r, 20));
    expect(woke).toBe(0); // a hit wakes nobody
    expect(t.lookup(parseIPv4('172.30.0.26'), ll, 0)).toBe(0);
    await waiting;
    expect([woke, t.takeMissed()]).toEqual([1, true]);
    expect(t.lookup(parseIPv4('172.30.0.25'), ll, 0)).toBe(0); // before the next wait: that wait ends at once
    await t.whenMissed();
    expect(t.takeMissed()).toBe(true);
    let ended = false;
    const pending = t.whenMissed().then(() => (ended = true));
    t.wakeMissWaiters();
    await pending;
    expect([ended, t.takeMissed()]).toEqual([true, false]); // ended without a miss
  });

  it('computes an address that shares a slot: written one slot on, and both found (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 0xfffffffe }), (a) => {
        const b = sharingSlot(a) >>> 0;
        expect(b).not.toBe(a);
        const t = new NeighbourTable();
        t.replace([{ address: a, ifindex: 1, mac: '02:00:00:00:00:01' }, { address: b, ifindex: 2, mac: '02:00:00:00:00:02' }]);
        const at = (x: number) => [...Array(2048).keys()].find((i) => t.words[3 + i * 5 + 1] !== 0 && t.words[3 + i * 5] === (x | 0))!;
        expect(at(b)).toBe((at(a) + 1) % 2048); // linear probing put b right after a
        expect([t.lookup(a, ll, 0), t.lookup(b, ll, 0)]).toEqual([1, 2]);
      }),
      { numRuns: 300 },
    );
  });

  it('marks a probe on every neighbour it wrote, and on nothing else', () => {
    const t = new NeighbourTable();
    const addrs = [...Array(300).keys()].map((i) => (0xac1e0000 + i * 7919) >>> 0);
    t.replace(addrs.map((a, i) => ({ address: a, ifindex: 1 + (i % 3), mac: macText(a | 0, i) })));
    t.markProbes();
    const probes = [...Array(2048).keys()].filter((i) => t.words[3 + i * 5 + 4] !== 0);
    expect(probes.length).toBe(300);
    expect(probes.every((i) => t.words[3 + i * 5 + 1] !== 0)).toBe(true);
    for (const a of addrs) expect([t.lookup(a, ll, 0), t.lookup(a, ll, 0)]).toEqual([0, expect.any(Number)]); // the probe, then a hit
    t.replace(addrs.slice(0, 10).map((a, i) => ({ address: a, ifindex: 1 + (i % 3), mac: macText(a | 0, i) })));
    t.markProbes();
    expect([...Array(2048).keys()].filter((i) => t.words[3 + i * 5 + 4] !== 0).length).toBe(10);
  });

  it('answers 0 while the main thread is rewriting it (odd version)', () => {
    const t = new NeighbourTable();
    t.replace([n('172.30.0.27', '52:54:00:00:00:01')]);
    Atomics.add(t.words, 0, 1);
    expect(t.lookup(parseIPv4('172.30.0.27'), ll, 0)).toBe(0);
  });

  it('finds every one of up to MAX_NEIGHBOURS addresses and no other (property)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 0xffffffff }), { minLength: 1, maxLength: MAX_NEIGHBOURS + 50 }), fc.integer({ min: 1, max: 0xffffffff }), (addrs, other) => {
        const t = new NeighbourTable();
        t.replace(addrs.map((a, i) => ({ address: a, ifindex: 1 + (i % 5), mac: macText(a | 0, i & 0xffff) })));
        const kept = addrs.slice(0, MAX_NEIGHBOURS);
        expect(t.size).toBe(kept.length);
        kept.forEach((a, i) => {
          expect(t.lookup(a, ll, 0)).toBe(1 + (i % 5));
          expect([ll[0], ll[1]]).toEqual([a | 0, i & 0xffff]);
        });
        for (const a of addrs.slice(MAX_NEIGHBOURS)) expect(t.lookup(a, ll, 0)).toBe(0);
        if (!addrs.includes(other)) expect(t.lookup(other, ll, 0)).toBe(0);
      }),
      { numRuns: 30 },
    );
  });

  it('macWords and macText are inverses, and a malformed MAC is refused', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), (b) => {
      const text = [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
      const [hi, lo] = macWords(text);
      expect(macText(hi, lo)).toBe(text);
    }));
    expect(() => macWords('52:54:00:00:00')).toThrow(/not a MAC address/);
  });
});
