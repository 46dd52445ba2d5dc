/**
 * Packet copies from a worker to the main thread while `userfan trace` is attached: one single-producer,
 * single-consumer ring of fixed slots per worker, in a SharedArrayBuffer. The worker copies only while a
 * trace is on (otherwise the data path pays one Atomics load per batch); the main thread drains and
 * streams the copies to the trace client. A full ring drops the copy and counts it: the data path never
 * waits for a trace. Packets longer than a slot are cut (pcap keeps the original length).
 *
 * A copy is taken before the worker acts on the packet and published with its verdict afterwards
 * (begin … commit), so a received packet shows as it arrived, with the reason it was dropped, if it was.
 *
 * Slot: u32 original length | u32 captured length | u32 seconds | u32 microseconds | u32 what | bytes,
 * where what = direction | verdict << 8 (verdict: 0 passed, else the Drop code).
 */
import { headerLength, i32 } from '../wire/ipv4.js';

export const TRACE_OUT = 1; // leaving on the underlay: outer + inner; or, dropped, the inner packet from the TUN
export const TRACE_IN = 2; //  arrived from the underlay: outer + inner, as it arrived

const SLOT = 2048;
const META = 20;
export const TRACE_SNAPLEN = SLOT - META;
const SLOTS = 1024;
const NONE = -1;

export interface TraceRecord {
  bytes: Uint8Array;
  originalLength: number;
  seconds: number;
  micros: number;
  direction: number;
  /** 0 when the packet went on; otherwise its Drop code. */
  verdict: number;
}

export class TraceRing {
  /** [0] slots published (producer), [1] slots read (consumer), [2] copies dropped because the ring was full. */
  readonly head: Int32Array;
  private readonly data: Uint8Array;
  private readonly view: DataView;
  /** Producer side: the slot begun and not yet committed. */
  private open = NONE;

  static buffer(): SharedArrayBuffer {
    return new SharedArrayBuffer(16 + SLOTS * SLOT);
  }

  constructor(readonly buffer: SharedArrayBuffer) {
    this.head = new Int32Array(buffer, 0, 4);
    this.data = new Uint8Array(buffer, 16);
    this.view = new DataView(buffer, 16);
  }

  /**
   * Producer (worker): copy bytes[off, off+len) into the next slot, not yet visible to the consumer.
   * False, and counted, when the ring is full. A begun slot not committed is overwritten by the next begin.
   */
  begin(bytes: Uint8Array, off: number, len: number, direction: number): boolean {
    return this.beginWith(bytes, 0, bytes, off, len, direction);
  }

  /**
   * begin() of head[0, headLen) followed by bytes[off, off+len), as one packet: headers made up for the
   * trace in front of what the worker has (the VXLAN type: the outer IPv4 and UDP headers are the kernel's).
   */
  beginWith(head: Uint8Array, headLen: number, bytes: Uint8Array, off: number, len: number, direction: number): boolean {
    const w = Atomics.load(this.head, 0);
    if (w - Atomics.load(this.head, 1) >= SLOTS) {
      Atomics.add(this.head, 2, 1);
      this.open = NONE;
      return false;
    }
    const at = (w % SLOTS) * SLOT;
    const total = headLen + len;
    const cap = total < TRACE_SNAPLEN ? total : TRACE_SNAPLEN;
    const now = performance.timeOrigin + performance.now(); // ms, to the microsecond
    const sec = Math.floor(now / 1000);
    const v = this.view;
    v.setUint32(at, total);
    v.setUint32(at + 4, cap);
    v.setUint32(at + 8, sec);
    v.setUint32(at + 12, Math.min(999_999, Math.floor((now - sec * 1000) * 1000)));
    v.setUint32(at + 16, direction);
    const d = this.data;
    const to = at + META;
    const h = headLen < cap ? headLen : cap;
    for (let i = 0; i < h; i++) d[to + i] = head[i];
    for (let i = h; i < cap; i++) d[to + i] = bytes[off + i - h];
    this.open = w;
    return true;
  }

  /** Producer: publish the slot begun last, with its verdict (0 = passed, else a Drop code). */
  commit(verdict: number): void {
    const w = this.open;
    if (w === NONE) return;
    this.open = NONE;
    const at = (w % SLOTS) * SLOT;
    this.view.setUint32(at + 16, this.view.getUint32(at + 16) | (verdict << 8));
    Atomics.store(this.head, 0, w + 1);
  }

  /** Producer: copy and publish at once. */
  append(bytes: Uint8Array, off: number, len: number, direction: number, verdict: number): void {
    if (this.begin(bytes, off, len, direction)) this.commit(verdict);
  }

  /** Consumer (main thread): hand every record published since the last drain to onRecord; how many. */
  drain(onRecord: (r: TraceRecord) => void): number {
    let r = Atomics.load(this.head, 1);
    const w = Atomics.load(this.head, 0);
    const n = w - r;
    for (; r < w; r++) {
      const at = (r % SLOTS) * SLOT;
      const cap = this.view.getUint32(at + 4);
      const what = this.view.getUint32(at + 16);
      onRecord({
        bytes: this.data.slice(at + META, at + META + cap),
        originalLength: this.view.getUint32(at),
        seconds: this.view.getUint32(at + 8),
        micros: this.view.getUint32(at + 12),
        direction: what & 0xff,
        verdict: what >>> 8,
      });
    }
    Atomics.store(this.head, 1, w);
    return n;
  }

  /** Consumer: forget whatever is published but unread (before a new trace starts). */
  skip(): void {
    Atomics.store(this.head, 1, Atomics.load(this.head, 0));
  }

  get dropped(): number {
    return Atomics.load(this.head, 2);
  }
}

/**
 * Whether the IPv4 packet at b[o, o+len) goes to the trace: `filter` (int32; 0 = every packet) is its
 * source or destination, or, for IP-in-IP, its inner packet's.
 */
export function traceMatches(b: Uint8Array, o: number, len: number, filter: number): boolean {
  if (filter === 0) return true;
  if (len < 20) return false;
  if (i32(b, o + 12) === filter || i32(b, o + 16) === filter) return true;
  if (b[o + 9] !== 4) return false;
  const i = o + headerLength(b, o);
  if (i + 20 > o + len) return false;
  return i32(b, i + 12) === filter || i32(b, i + 16) === filter;
}

/** The VXLAN type's trace: its VNI and port, and this host's underlay address (int32). */
export interface VxlanTrace {
  vni: number;
  port: number;
  local: number;
}

const UDP_HEADER = 8;
const VXLAN_HEADER = 8;
const ETH_HEADER = 14;

/**
 * traceMatches() for an Ethernet frame at b[f, f+len) carried from outer src to dst (int32): `filter` is
 * either outer address, or the frame's IPv4 source or destination, or its ARP sender or target.
 */
export function frameMatches(b: Uint8Array, f: number, len: number, src: number, dst: number, filter: number): boolean {
  if (filter === 0 || src === filter || dst === filter) return true;
  if (len < ETH_HEADER + 20) return false;
  const type = (b[f + 12] << 8) | b[f + 13];
  const p = f + ETH_HEADER;
  if (type === 0x0800) return i32(b, p + 12) === filter || i32(b, p + 16) === filter;
  if (type === 0x0806 && len >= ETH_HEADER + 28) return i32(b, p + 14) === filter || i32(b, p + 24) === filter;
  return false;
}

/**
 * A worker's side of `userfan trace`: the worker sets `on` and `filter` once a round from the pool's
 * control words; the data path checks `on` before anything else, so with no trace attached a batch pays
 * one property read. Without a ring (up --no-trace) it is never on.
 *
 * Every record is an IPv4 packet (the pcap is LINKTYPE_RAW). For the VXLAN type, whose outer IPv4 and UDP
 * headers the kernel writes, the tap writes them in front of what the worker has: a datagram sent or
 * received gets them with its real addresses and the VXLAN port; a frame dropped on its way out, before it
 * had a VXLAN header or a remote host, gets a VXLAN header too and the destination 0.0.0.0. The made-up
 * headers have DF clear, TTL 64, ID and UDP checksum 0.
 */
export class TraceTap {
  on = false;
  filter = 0;
  /** The made-up outer headers of the record being copied (VXLAN). */
  private readonly head = new Uint8Array(20 + UDP_HEADER + VXLAN_HEADER);

  constructor(
    readonly ring: TraceRing | undefined,
    readonly vxlan?: VxlanTrace,
  ) {}

  /** A packet leaving as it is on the wire (outer IPv4 header first), or dropped on its way out (verdict: its Drop code). */
  out(b: Uint8Array, off: number, len: number, verdict: number): void {
    const x = this.vxlan;
    const match = x ? frameMatches(b, off + 36, len - 36, i32(b, off + 12), i32(b, off + 16), this.filter) : traceMatches(b, off, len, this.filter);
    if (match) this.ring!.append(b, off, len, TRACE_OUT, verdict);
  }

  /** A packet read from the device and dropped before it was encapsulated (VXLAN: a frame, to no host yet). */
  dropOut(b: Uint8Array, off: number, len: number, verdict: number): void {
    const x = this.vxlan;
    if (!x) return this.out(b, off, len, verdict);
    if (!frameMatches(b, off, len, x.local, 0, this.filter)) return;
    const h = this.outer(len + VXLAN_HEADER, x.local, 0);
    const v = this.head;
    v[h] = 0x08;
    v[h + 1] = v[h + 2] = v[h + 3] = v[h + 7] = 0;
    v[h + 4] = x.vni >>> 16;
    v[h + 5] = x.vni >>> 8;
    v[h + 6] = x.vni;
    if (this.ring!.beginWith(v, h + VXLAN_HEADER, b, off, len, TRACE_OUT)) this.ring!.commit(verdict);
  }

  /** VXLAN: a datagram (VXLAN header and frame) the socket sends to dst. */
  outDatagram(b: Uint8Array, off: number, len: number, dst: number, verdict: number): void {
    const x = this.vxlan!;
    if (!frameMatches(b, off + VXLAN_HEADER, len - VXLAN_HEADER, x.local, dst, this.filter)) return;
    if (this.ring!.beginWith(this.head, this.outer(len, x.local, dst), b, off, len, TRACE_OUT)) this.ring!.commit(verdict);
  }

  /**
   * Copies an arriving packet as it is (VXLAN: the datagram, behind outer headers from src, the sender
   * the socket reported); publish it with commitIn once its verdict is known.
   */
  beginIn(b: Uint8Array, off: number, len: number, src: number): boolean {
    const x = this.vxlan;
    if (!x) return traceMatches(b, off, len, this.filter) && this.ring!.begin(b, off, len, TRACE_IN);
    return frameMatches(b, off + VXLAN_HEADER, len - VXLAN_HEADER, src, x.local, this.filter) && this.ring!.beginWith(this.head, this.outer(len, src, x.local), b, off, len, TRACE_IN);
  }

  commitIn(verdict: number): void {
    this.ring!.commit(verdict);
  }

  /** An arriving packet dropped before it could be copied whole (truncated by its slot). */
  inDropped(b: Uint8Array, off: number, len: number, verdict: number, src: number): void {
    if (this.beginIn(b, off, len, src)) this.ring!.commit(verdict);
  }

  /** Writes made-up IPv4 and UDP headers for `payload` UDP payload bytes from src to dst; returns their length. */
  private outer(payload: number, src: number, dst: number): number {
    const v = this.head;
    const port = this.vxlan!.port;
    const total = Math.min(20 + UDP_HEADER + payload, 0xffff);
    v[0] = 0x45;
    v[1] = 0;
    v[2] = total >>> 8;
    v[3] = total;
    v[4] = v[5] = v[6] = v[7] = 0;
    v[8] = 64;
    v[9] = 17;
    v[10] = v[11] = 0;
    putWord(v, 12, src);
    putWord(v, 16, dst);
    let s = 0;
    for (let i = 0; i < 20; i += 2) s += (v[i] << 8) | v[i + 1];
    s = (s & 0xffff) + (s >>> 16);
    s = ~((s & 0xffff) + (s >>> 16)) & 0xffff;
    v[10] = s >>> 8;
    v[11] = s;
    const udp = total - 20;
    v[20] = v[22] = port >>> 8;
    v[21] = v[23] = port;
    v[24] = udp >>> 8;
    v[25] = udp;
    v[26] = v[27] = 0;
    return 20 + UDP_HEADER;
  }
}

function putWord(v: Uint8Array, at: number, x: number): void {
  v[at] = x >>> 24;
  v[at + 1] = x >>> 16;
  v[at + 2] = x >>> 8;
  v[at + 3] = x;
}
