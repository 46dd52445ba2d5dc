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
    const w = Atomics.load(this.head, 0);
    if (w - Atomics.load(this.head, 1) >= SLOTS) {
      Atomics.add(this.head, 2, 1);
      this.open = NONE;
      return false;
    }
    const at = (w % SLOTS) * SLOT;
    const cap = len < TRACE_SNAPLEN ? len : TRACE_SNAPLEN;
    const now = performance.timeOrigin + performance.now(); // ms, to the microsecond
    const sec = Math.floor(now / 1000);
    const v = this.view;
    v.setUint32(at, len);
    v.setUint32(at + 4, cap);
    v.setUint32(at + 8, sec);
    v.setUint32(at + 12, Math.min(999_999, Math.floor((now - sec * 1000) * 1000)));
    v.setUint32(at + 16, direction);
    const d = this.data;
    const to = at + META;
    for (let i = 0; i < cap; i++) d[to + i] = bytes[off + i];
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

/**
 * A worker's side of `userfan trace`: the worker sets `on` and `filter` once a round from the pool's
 * control words; the data path checks `on` before anything else, so with no trace attached a batch pays
 * one property read. Without a ring (up --no-trace) it is never on.
 */
export class TraceTap {
  on = false;
  filter = 0;
  constructor(readonly ring: TraceRing | undefined) {}

  /** A packet leaving (outer + inner), or one dropped on its way out (verdict: its Drop code). */
  out(b: Uint8Array, off: number, len: number, verdict: number): void {
    if (traceMatches(b, off, len, this.filter)) this.ring!.append(b, off, len, TRACE_OUT, verdict);
  }

  /** Copies an arriving packet as it is; publish it with commitIn once its verdict is known. */
  beginIn(b: Uint8Array, off: number, len: number): boolean {
    return traceMatches(b, off, len, this.filter) && this.ring!.begin(b, off, len, TRACE_IN);
  }

  commitIn(verdict: number): void {
    this.ring!.commit(verdict);
  }

  /** An arriving packet dropped before it could be copied whole (truncated by its slot). */
  inDropped(b: Uint8Array, off: number, len: number, verdict: number): void {
    if (traceMatches(b, off, len, this.filter)) this.ring!.append(b, off, len, TRACE_IN, verdict);
  }
}
