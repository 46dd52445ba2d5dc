/**
 * Underlay neighbours for TX GSO (`userfan up --send gso`, the default): which MAC, on which interface,
 * an underlay host's whole super-packet frames can be sent to directly, without the kernel's IP output
 * path (src/underlay/gso.ts).
 *
 * The kernel stays the one that resolves addresses. The main thread copies its ARP table
 * (/proc/net/arp: complete Ethernet entries on a fan's underlay interface, inside that fan's
 * underlay network) into a shared table once a second; workers look a destination up per packet
 * read from the TUN. An address the table does not have goes through the raw IP socket, and so does
 * one packet per neighbour per refresh (a "probe"): that traffic through the kernel is what makes
 * it resolve a new host, and notice (by its own neighbour checks) a host whose MAC changed, which
 * the next copy then picks up. A host reached through a gateway never has its own entry, so it is
 * always sent through the kernel, which routes it.
 *
 * A lookup that finds no entry raises a flag and wakes the main thread, which waits for it
 * (whenMissed: Atomics.waitAsync, no polling) and then copies the table at once, at most once per
 * NEIGHBOUR_MISS_CHECK_MS (src/dataplane/pool.ts): the kernel resolves a new host within milliseconds
 * of its first packet, and a transfer to it should not wait for the next second's copy to leave by MAC
 * (with TX GSO: whole).
 *
 * Layout (Int32Array over a SharedArrayBuffer): [0] version (odd while the main thread rewrites the
 * table: a lookup that sees it odd, or changed, answers "unknown"), [1] entries, [2] missed (set by a
 * lookup that found no entry, cleared by takeMissed), then SLOTS slots of
 * [address (int32), ifindex (0 = empty), MAC bytes 0–3 (big-endian), MAC bytes 4–5, probe due]
 * with linear probing. Lookups allocate nothing.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { parseIPv4, prefixMask } from '../fan/addr.js';

const VERSION = 0;
const COUNT = 1;
const MISSED = 2;
const HEADER = 3;
const W = 5;
const ADDR = 0;
const IFINDEX = 1;
const MAC_HI = 2;
const MAC_LO = 3;
const PROBE = 4;
/** Slots (a power of two); at most half are filled, so at most MAX_NEIGHBOURS entries. */
const SLOTS = 2048;
const MASK = SLOTS - 1;
export const MAX_NEIGHBOURS = SLOTS / 2;

export interface Neighbour {
  /** IPv4 address, uint32. */
  address: number;
  ifindex: number;
  /** "aa:bb:cc:dd:ee:ff". */
  mac: string;
}

/** Atomics.waitAsync (ES2024; Node.js has it since 16, the ES2022 lib this project compiles against does not type it). */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, index: number, value: number): { async: false; value: string } | { async: true; value: Promise<string> };
}).waitAsync;

const HASH = 0x9e3779b1;
const slotOf = (address: number) => Math.imul(address | 0, HASH) >>> 21; // top 11 bits: 0..SLOTS-1

/**
 * Another address in `a`'s slot, computed rather than searched for (a search calls slotOf some thousand
 * times, which got it optimized in every worker at start): with HASH's inverse h mod 2^32, (a ± h)·HASH
 * is a·HASH ± 1, whose top 11 bits are a's unless the low 21 carry or borrow into them; one of the two
 * never does.
 */
export function sharingSlot(a: number): number {
  let h = HASH; // Newton's iteration for the inverse of an odd number mod 2^32: 3, 6, 12, 24, 48 bits
  for (let i = 0; i < 4; i++) h = Math.imul(h, 2 - Math.imul(HASH, h));
  const b = (a + h) | 0;
  return slotOf(b) === slotOf(a) ? b : (a - h) | 0;
}

export class NeighbourTable {
  readonly words: Int32Array;
  /** What replace() last wrote (main thread), as its sorted keys. */
  #written = '';
  /** Where replace() last wrote its entries (word offsets of their slots): markProbes visits these alone. */
  #slots: number[] = [];

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(4 * (HEADER + SLOTS * W))) {
    this.words = new Int32Array(buffer);
  }

  /**
   * The link-layer next hop for underlay address `address` (int32 or uint32): its interface index,
   * with its MAC in ll[at] (bytes 0–3, big-endian) and ll[at + 1] (bytes 4–5). 0 when the packet is to
   * go through the kernel instead: the address is unknown, the table is being rewritten, or this is
   * the neighbour's probe packet for this refresh (the first lookup after it claims it).
   */
  lookup(address: number, ll: Int32Array, at: number): number {
    const t = this.words;
    const v = Atomics.load(t, VERSION);
    if ((v & 1) !== 0) return 0;
    const a = address | 0;
    let i = slotOf(a);
    for (let n = 0; n < SLOTS; n++) {
      const b = HEADER + i * W;
      const ifindex = Atomics.load(t, b + IFINDEX);
      if (ifindex === 0) {
        // Raised once per copy: the first miss wakes the main thread (whenMissed), later ones only read.
        if (t[MISSED] === 0) {
          t[MISSED] = 1;
          Atomics.notify(t, MISSED, 1);
        }
        return 0;
      }
      if (Atomics.load(t, b + ADDR) === a) {
        const hi = Atomics.load(t, b + MAC_HI);
        const lo = Atomics.load(t, b + MAC_LO);
        if (Atomics.load(t, VERSION) !== v) return 0;
        if (Atomics.load(t, b + PROBE) !== 0 && Atomics.compareExchange(t, b + PROBE, 1, 0) === 1) return 0;
        ll[at] = hi;
        ll[at + 1] = lo;
        return ifindex;
      }
      i = (i + 1) & MASK;
    }
    return 0;
  }

  /**
   * Resolves when a lookup finds no entry (at once if one has since the last takeMissed): a wait on the
   * flag (Atomics.waitAsync), so an idle daemon runs no timer for it. A pending wait does not keep the
   * process alive; wakeMissWaiters() ends it.
   */
  whenMissed(): Promise<unknown> {
    const w = waitAsync(this.words, MISSED, 0);
    return w.async ? w.value : Promise.resolve(w.value);
  }

  /** Ends a pending whenMissed() without a miss (the pool, when it stops). */
  wakeMissWaiters(): void {
    Atomics.notify(this.words, MISSED);
  }

  /** Whether a lookup found no entry since the last call (main thread; clears the flag). */
  takeMissed(): boolean {
    return Atomics.exchange(this.words, MISSED, 0) !== 0;
  }

  /** How many neighbours the table holds. */
  get size(): number {
    return Atomics.load(this.words, COUNT);
  }

  /** What the table holds (for show and tests). */
  entries(): Neighbour[] {
    const t = this.words;
    const out: Neighbour[] = [];
    for (let i = 0; i < SLOTS; i++) {
      const b = HEADER + i * W;
      if (t[b + IFINDEX] === 0) continue;
      out.push({ address: t[b + ADDR] >>> 0, ifindex: t[b + IFINDEX], mac: macText(t[b + MAC_HI], t[b + MAC_LO]) });
    }
    return out.sort((x, y) => x.address - y.address);
  }

  /**
   * Makes the table hold exactly `list` (main thread only; the first MAX_NEIGHBOURS entries). Returns
   * whether anything changed; an unchanged table is not rewritten, so lookups go on undisturbed.
   */
  replace(list: readonly Neighbour[]): boolean {
    const want = list.slice(0, MAX_NEIGHBOURS);
    // Compared with what this table last wrote, not read back with entries(): a scan of every slot once
    // a second got entries() optimized on the main thread, and deoptimized when the first neighbour came.
    const written = [...want].sort((x, y) => x.address - y.address).map((n) => `${n.address}/${n.ifindex}/${n.mac}`).join(' ');
    if (written === this.#written) return false;
    this.#written = written;
    const t = this.words;
    Atomics.add(t, VERSION, 1); // odd: lookups answer "unknown" until the second add
    t.fill(0, HEADER);
    let count = 0;
    const slots: number[] = [];
    for (const n of want) {
      const [hi, lo] = macWords(n.mac);
      let i = slotOf(n.address);
      while (t[HEADER + i * W + IFINDEX] !== 0 && t[HEADER + i * W + ADDR] !== (n.address | 0)) i = (i + 1) & MASK;
      const b = HEADER + i * W;
      if (t[b + IFINDEX] === 0) {
        count++;
        slots.push(b);
      }
      t[b + ADDR] = n.address | 0;
      t[b + IFINDEX] = n.ifindex;
      t[b + MAC_HI] = hi;
      t[b + MAC_LO] = lo;
      t[b + PROBE] = 0;
    }
    Atomics.store(t, COUNT, count);
    Atomics.add(t, VERSION, 1);
    this.#slots = slots;
    return true;
  }

  /**
   * Marks every neighbour's probe as due: the next packet to each goes through the kernel (main thread:
   * the entries its last replace() wrote). A visit of each entry, not of all SLOTS slots: a scan of every
   * slot once a second was hot enough for V8 to optimize, in an idle daemon.
   */
  markProbes(): void {
    const t = this.words;
    for (const b of this.#slots) Atomics.store(t, b + PROBE, 1);
  }
}

/**
 * Runs every path of lookup() a few times on a scratch table: a hit in its own slot, a hit one slot on
 * (two addresses that share a slot), a neighbour whose probe is due, misses. A worker calls it before
 * any traffic. V8 optimizes lookup() under the first flood; a path that flood never took (say, every
 * lookup missed because the neighbour copy was still empty: it comes a second after the first packet
 * to a new host) has no type feedback, and the first packet that takes it deoptimizes lookup() and the
 * worker loop it is inlined in, for good when traffic then turns sparse (test/integration/deopt.test.ts).
 */
export function warmUpLookups(rounds = 16): void {
  const table = new NeighbourTable();
  const a = 0x0a000001;
  const b = sharingSlot(a);
  table.replace([
    { address: a, ifindex: 1, mac: '02:00:00:00:00:01' },
    { address: b, ifindex: 1, mac: '02:00:00:00:00:02' },
  ]);
  const ll = new Int32Array(2);
  for (let i = 0; i < rounds; i++) {
    table.lookup(a, ll, 0);
    table.lookup(b, ll, 0);
    table.lookup(a + 0x100, ll, 0);
    table.markProbes();
    table.lookup(b, ll, 0);
  }
}

/** "aa:bb:cc:dd:ee:ff" → [bytes 0–3 big-endian as int32, bytes 4–5]. */
export function macWords(mac: string): [number, number] {
  const m = /^([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})$/i.exec(mac);
  if (!m) throw new RangeError(`${mac}: not a MAC address (aa:bb:cc:dd:ee:ff)`);
  const b = m.slice(1).map((x) => parseInt(x, 16));
  return [((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) | 0, (b[4] << 8) | b[5]];
}

export function macText(hi: number, lo: number): string {
  const b = [hi >>> 24, (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff, (lo >>> 8) & 0xff, lo & 0xff];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** A fan's underlay as the neighbour copy needs it: its interface and its network. */
export interface UnderlayLink {
  iface: string;
  ifindex: number;
  /** Underlay network (uint32) and prefix length: only neighbours inside it are used. */
  net: number;
  len: number;
  /** This host's own underlay address, never a neighbour. */
  local: number;
}

const ATF_COM = 0x02;
const ARPHRD_ETHER = 0x1;

/**
 * The complete (ATF_COM) Ethernet entries with a MAC in /proc/net/arp's text: address (uint32), MAC
 * (lower case) and device.
 */
function* arpEntries(text: string, from = text.indexOf('\n') + 1): Generator<{ address: number; mac: string; dev: string }> {
  let at = from; // after the header, unless told
  while (at >= 0 && at < text.length) {
    const end = text.indexOf('\n', at);
    const line = text.slice(at, end < 0 ? text.length : end);
    at = end < 0 ? text.length : end + 1;
    const f = line.trim().split(/\s+/);
    if (f.length < 6) continue;
    const [ip, hw, flags, mac, , dev] = f;
    if (Number(hw) !== ARPHRD_ETHER || (Number(flags) & ATF_COM) === 0 || mac === '00:00:00:00:00:00') continue;
    let address: number;
    try {
      address = parseIPv4(ip);
      macWords(mac);
    } catch {
      continue;
    }
    yield { address, mac: mac.toLowerCase(), dev };
  }
}

/** Appends to `out` the usable neighbours of arp lines in text (from `from`), up to `max` in all. */
function collect(text: string, from: number, links: readonly UnderlayLink[], out: Neighbour[], max: number): void {
  for (const { address, mac, dev } of arpEntries(text, from)) {
    if (out.length >= max) return;
    const link = links.find((l) => l.iface === dev && ((address & prefixMask(l.len)) >>> 0) === ((l.net & prefixMask(l.len)) >>> 0) && address !== l.local);
    if (link) out.push({ address, ifindex: link.ifindex, mac });
  }
}

/**
 * The usable neighbours in /proc/net/arp's text: complete Ethernet entries on one of `links`'
 * interfaces and inside that link's underlay network; the first `max` of them.
 */
export function parseArpTable(text: string, links: readonly UnderlayLink[], max = Infinity): Neighbour[] {
  const out: Neighbour[] = [];
  collect(text, text.indexOf('\n') + 1, links, out, max);
  return out;
}

/**
 * Bytes per read of /proc/net/arp. The kernel walks its whole neighbour table (every namespace's) from
 * the start at each read call, to find where the last one stopped: with 65,534 neighbours (5.1 MiB of
 * text) reading it all in 64 KiB reads, as readFileSync does, took 0.8–1 s of CPU, once a second.
 */
const ARP_READ_CHUNK = 128 << 10;
let arpBuffer: Buffer | undefined;

/**
 * Reads /proc/net/arp of the calling thread's network namespace: its first `max` usable neighbours (the
 * table keeps the first MAX_NEIGHBOURS anyway), reading no further than it needs to find them.
 */
export function readArpTable(links: readonly UnderlayLink[], path = '/proc/net/arp', max = Infinity): Neighbour[] {
  const buf = (arpBuffer ??= Buffer.allocUnsafeSlow(ARP_READ_CHUNK));
  const out: Neighbour[] = [];
  const fd = openSync(path, 'r');
  try {
    let rest = '';
    let from = -1; // the header is not read yet
    for (let n = readSync(fd, buf, 0, buf.length, null); n > 0 && out.length < max; n = readSync(fd, buf, 0, buf.length, null)) {
      const text = rest + buf.toString('latin1', 0, n);
      const cut = text.lastIndexOf('\n') + 1;
      if (from < 0 && cut > 0) from = text.indexOf('\n') + 1;
      collect(text.slice(0, cut), Math.max(0, from), links, out, max);
      if (cut > 0) from = 0;
      rest = text.slice(cut);
    }
    if (rest && from >= 0) collect(rest, 0, links, out, max);
    return out;
  } finally {
    closeSync(fd);
  }
}

/**
 * The kernel's complete ARP entry for `address` (uint32) in /proc/net/arp, on any interface: its MAC and
 * device; undefined when there is none (never resolved, or the resolution failed).
 */
export function kernelNeighbour(address: number, path = '/proc/net/arp'): { mac: string; dev: string } | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  for (const e of arpEntries(text)) if (e.address === address >>> 0) return { mac: e.mac, dev: e.dev };
  return undefined;
}

/**
 * Where the kernel counts neighbours it could not create because its table was full (table_fulls, the
 * last column of every CPU's row of arp_cache, hexadecimal). The table (arp_tbl) is one for all network
 * namespaces, and so are its limits (net.ipv4.neigh.default.gc_thresh1/2/3, in the initial namespace
 * only); the file exists only there too, and another namespace sharing the PID namespace reads it as
 * /proc/1/net/stat/arp_cache.
 */
const ARP_CACHE_STATS = ['/proc/net/stat/arp_cache', '/proc/1/net/stat/arp_cache'];

/**
 * table_fulls summed over the CPUs in arp_cache's text; undefined when the text has no such column. When
 * the kernel cannot create the neighbour a packet needs, it drops that packet ("neighbour table overflow"
 * in its log) and a raw socket's send is not told (ENOBUFS reaches only sockets with IP_RECVERR).
 */
export function parseTableFulls(text: string): number | undefined {
  const [head, ...rows] = text.trim().split('\n');
  const col = head?.trim().split(/\s+/).indexOf('table_fulls') ?? -1;
  if (col < 0) return undefined;
  let n = 0;
  for (const r of rows) n += parseInt(r.trim().split(/\s+/)[col] ?? '0', 16) || 0;
  return n;
}

/** The kernel's table_fulls now (all namespaces together); undefined where it cannot be read. */
export function kernelTableFulls(paths: readonly string[] = ARP_CACHE_STATS): number | undefined {
  for (const p of paths) {
    try {
      const n = parseTableFulls(readFileSync(p, 'utf8'));
      if (n !== undefined) return n;
    } catch {}
  }
  return undefined;
}

/** net.ipv4.neigh.default.gc_thresh3, the table's hard limit (readable in the initial namespace only). */
export function kernelGcThresh3(): number | undefined {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/neigh/default/gc_thresh3', 'utf8').trim());
  } catch {
    return undefined;
  }
}
