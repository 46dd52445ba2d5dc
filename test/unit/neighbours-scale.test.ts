/**
 * A fan bigger than the neighbour copy (issue 22): a /16 underlay has 65,534 possible hosts and the copy
 * behind TX GSO (src/underlay/neighbours.ts) holds MAX_NEIGHBOURS. Filled past its size, it keeps the
 * first MAX_NEIGHBOURS, every other host's lookup answers 0 quickly, and the TX GSO underlay then sends
 * that host's packets, super-packets included, through the raw socket: none is dropped. Also the kernel's
 * own table overflow counter that the pool watches, and the lab's sizing of the kernel's limits.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseIPv4 } from '../../src/fan/addr.js';
import { PacketList, RoutePlan, type EgressBatch } from '../../src/io/batch.js';
import { C_DROPS, C_TX_GSO, C_TX_LINK, ROW } from '../../src/io/counters.js';
import { GsoUnderlay } from '../../src/underlay/gso.js';
import {
  kernelTableFulls, macText, MAX_NEIGHBOURS, NeighbourTable, parseArpTable, parseTableFulls, readArpTable, type Neighbour, type UnderlayLink,
} from '../../src/underlay/neighbours.js';
import { labNeighbourEntries, limitsFor } from '../../src/lab/neighbour-limits.js';

const NET = parseIPv4('198.18.0.0');
/** Every host of 198.18.0.0/16: .0.1 to .255.254. */
const HOSTS = Array.from({ length: 65_534 }, (_, i) => (NET + 1 + i) >>> 0);
const neighbour = (address: number, i: number): Neighbour => ({ address, ifindex: 7, mac: macText(0x02000000 | i, i & 0xffff) });

describe('the neighbour copy filled past its size (a /16 of 65,534 hosts)', () => {
  const table = new NeighbourTable();
  table.replace(HOSTS.map(neighbour));
  const ll = new Int32Array(2);

  it('keeps the first MAX_NEIGHBOURS and finds each of them', () => {
    expect(MAX_NEIGHBOURS).toBe(1024);
    expect(table.size).toBe(MAX_NEIGHBOURS);
    for (let i = 0; i < MAX_NEIGHBOURS; i++) {
      expect(table.lookup(HOSTS[i], ll, 0)).toBe(7);
      expect(macText(ll[0], ll[1])).toBe(neighbour(HOSTS[i], i).mac);
    }
  });

  it('answers 0 (through the kernel) for every one of the other 64,510 hosts, and flags the misses', () => {
    table.takeMissed();
    let zeros = 0;
    for (let i = MAX_NEIGHBOURS; i < HOSTS.length; i++) if (table.lookup(HOSTS[i], ll, 0) === 0) zeros++;
    expect(zeros).toBe(HOSTS.length - MAX_NEIGHBOURS);
    expect(table.takeMissed()).toBe(true);
  });

  it('stays fast when full: half the slots at most are used, so a miss ends at an empty slot soon', () => {
    // Read from the table's shared memory (a 3-word header, then 5 words a slot, word 1 the interface index,
    // 0 when empty): how many slots are used, and the longest run of used ones, which is at most what a miss
    // reads before the empty slot that ends it (a table scanned whole would read all 2048).
    const w = table.words;
    const slots = (w.length - 3) / 5;
    const used = (i: number) => w[3 + (i % slots) * 5 + 1] !== 0;
    let inUse = 0;
    let run = 0;
    let longest = 0;
    for (let i = 0; i < 2 * slots; i++) {
      if (i < slots && used(i)) inUse++;
      run = used(i) ? run + 1 : 0;
      longest = Math.max(longest, run);
    }
    expect(inUse).toBe(MAX_NEIGHBOURS);
    expect(inUse).toBeLessThanOrEqual(slots / 2);
    expect(longest, 'the longest run of used slots').toBeLessThanOrEqual(8); // 4 for these 1,024 hosts
  });
});

/** A TX GSO underlay around a raw underlay that records what it is handed (no sockets, nothing sent). */
function gsoWithRecordingRaw(table: NeighbourTable) {
  const taken: number[] = [];
  const counters = new Float64Array(ROW);
  const raw = { pending: false, id: 0, take: (_b: EgressBatch, _i: number, _s: number, d: number) => void taken.push(d >>> 0), flush() {} };
  const g = Object.create(GsoUnderlay.prototype) as GsoUnderlay;
  Object.assign(g, {
    raw, table, c: counters, hop: new Int32Array(2), ifs: Int32Array.of(7), macHi: Int32Array.of(0x02000000), macLo: Int32Array.of(1),
    gtx: new PacketList(new Uint8Array(64), 4), gtxIf: new Int32Array(4), gtxSegs: new Int32Array(4),
    o: { ttl: 64, tap: { on: false } },
  });
  return { g, taken, counters };
}

/** n TCP super-packets (gsoSize > 0) from the TUN, to dsts[i]. */
function superPackets(dsts: readonly number[]): { batch: EgressBatch; plan: RoutePlan } {
  const n = dsts.length;
  const batch: EgressBatch = {
    bytes: new Uint8Array(64), packets: new PacketList(new Uint8Array(64), n), gsoSize: new Int32Array(n).fill(1448), gsoFlags: new Uint8Array(n),
    cut: () => 1, resetCuts: () => {},
  };
  const plan = new RoutePlan(n);
  dsts.forEach((d, i) => {
    plan.src[i] = parseIPv4('198.18.0.28') | 0;
    plan.dst[i] = d | 0;
  });
  return { batch, plan };
}

describe('TX GSO with more hosts than the neighbour copy holds', () => {
  it('sends the packets of every host the copy does not have through the raw socket, and drops none', () => {
    const table = new NeighbourTable();
    table.replace(HOSTS.map(neighbour));
    const { g, taken, counters } = gsoWithRecordingRaw(table);
    const rest = HOSTS.slice(MAX_NEIGHBOURS);
    for (let at = 0; at < rest.length; at += 256) {
      const { batch, plan } = superPackets(rest.slice(at, at + 256));
      g.send(batch, plan, plan.capacity);
    }
    expect(taken).toEqual(rest);
    expect(counters[C_TX_GSO] + counters[C_TX_LINK]).toBe(0);
    expect(counters.slice(C_DROPS).reduce((a, b) => a + b, 0)).toBe(0);
  });
});

describe('/proc/net/arp of a /16 (65,533 neighbours, 4.8 MiB)', () => {
  const link: UnderlayLink = { iface: 'eth0', ifindex: 7, net: NET, len: 16, local: parseIPv4('198.18.0.28') };
  const rows = HOSTS.filter((a) => a !== link.local).map((a, i) => {
    const ip = `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
    return `${ip.padEnd(17)}0x1         ${i % 97 === 5 ? '0x0' : '0x2'}         ${neighbour(a, i).mac}     *        ${i % 89 === 3 ? 'eth1' : 'eth0'}`;
  });
  const text = ['IP address       HW type     Flags       HW address            Mask     Device', ...rows].join('\n') + '\n';
  const dir = mkdtempSync(join(tmpdir(), 'ufsc-'));
  const file = join(dir, 'arp');
  writeFileSync(file, text);

  it('reads in chunks exactly what parsing the whole text finds, incomplete and other interfaces left out', () => {
    const all = parseArpTable(text, [link]);
    expect(all.length).toBeGreaterThan(64_000);
    expect(all.length).toBeLessThan(65_533);
    expect(readArpTable([link], file)).toEqual(all);
    expect(readArpTable([link], file, MAX_NEIGHBOURS + 1)).toEqual(all.slice(0, MAX_NEIGHBOURS + 1));
    rmSync(dir, { recursive: true, force: true });
  });
});

describe("the kernel's neighbour table overflow counter", () => {
  const text = [
    'entries  allocs   destroys hash_grows lookups  hits     res_failed rcv_probes_mcast rcv_probes_ucast periodic_gc_runs forced_gc_runs unresolved_discards table_fulls',
    '00000402 00000895 000006d6 00000004   00005a87 00002b58 00000000   00000000         00000000         000000be         00000076       00000000            00000068',
    '00000402 0000049a 00000480 00000002   000009d8 00000296 00000000   00000000         00000000         00000000         00000000       00000000            00000010',
  ].join('\n');

  it('is table_fulls summed over the CPUs (hexadecimal); absent without the column', () => {
    expect(parseTableFulls(text)).toBe(0x68 + 0x10);
    expect(parseTableFulls('entries allocs\n00000001 00000002')).toBeUndefined();
  });

  it('is read from the first file that has it, and undefined where none can be read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ufsc-'));
    try {
      writeFileSync(join(dir, 'arp_cache'), text);
      expect(kernelTableFulls([join(dir, 'missing'), join(dir, 'arp_cache')])).toBe(0x78);
      expect(kernelTableFulls([join(dir, 'missing')])).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the lab's room in the kernel's neighbour table", () => {
  it('asks for an ARP entry per ordered pair of hosts and two per host, and never lowers the defaults', () => {
    expect(labNeighbourEntries(64)).toBe(4160); // what the kernel held at 64 hosts after all pairs pinged
    expect(labNeighbourEntries(128)).toBe(16_512);
    expect(limitsFor(4160)).toEqual({ gc_thresh1: 4160, gc_thresh2: 4160, gc_thresh3: 8320 });
    expect(limitsFor(10)).toEqual({ gc_thresh1: 1024, gc_thresh2: 1024, gc_thresh3: 2048 });
  });
});
