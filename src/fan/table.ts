/**
 * The fans of one host in the form the per-packet path reads: parallel Int32Arrays, 32-bit integer
 * arithmetic, no allocation, no Map. A host carries at most 256 fans (the kernel reserves room for 256
 * maps on one device) and in practice one or two, so a linear scan is the fastest lookup.
 *
 * Addresses go in as any 32-bit pattern (uint32 or int32) and come out as int32: `>>> 0` gives the
 * usual uint32. Int32 because V8 keeps those as small integers: a uint32 above 2^31 (every address from
 * 128.0.0.0 on) is a heap number, allocated whenever it crosses a call V8 did not inline, and the
 * per-packet path must not allocate. Every method answering per packet returns a number: an underlay
 * address, or NO_FAN (0). 0.0.0.0 is never an underlay host: underlays in 0.0.0.0/8 are refused at
 * parse time.
 */
import { formatCidr, prefixMask } from './addr.js';
import { ConfigError } from './errors.js';
import { type Fan, type Prefix } from './fan.js';

export const MAX_FANS = 256;
/** Returned by lookups when no fan covers the address. */
export const NO_FAN = 0;
/**
 * Returned when the address lies in a fan but its slice belongs to the underlay's network or broadcast
 * address, which no host can own. 0.0.0.1 is never an underlay host either.
 */
export const NO_HOST = 1;

/** Whether two prefixes share any address (one contains the other). */
export function prefixesOverlap(a: Prefix, b: Prefix): boolean {
  const m = prefixMask(Math.min(a.len, b.len));
  return ((a.net & m) >>> 0) === ((b.net & m) >>> 0);
}

export class FanTable {
  private n = 0;
  private readonly oNet = new Int32Array(MAX_FANS);
  private readonly oMask = new Int32Array(MAX_FANS);
  private readonly uNet = new Int32Array(MAX_FANS);
  private readonly uMask = new Int32Array(MAX_FANS);
  private readonly shift = new Uint8Array(MAX_FANS);
  /** All-ones host bits of the underlay (its broadcast's host part); 0 for /31 and /32 underlays. */
  private readonly uHostMax = new Int32Array(MAX_FANS);
  private readonly local = new Int32Array(MAX_FANS);
  private readonly slice = new Int32Array(MAX_FANS);
  private readonly sliceMask = new Int32Array(MAX_FANS);
  readonly fans: Fan[] = [];

  constructor(fans: Iterable<Fan> = []) {
    for (const f of fans) this.add(f);
  }

  get size(): number {
    return this.n;
  }

  /**
   * Add a fan. Refused, changing nothing: the same overlay twice (EEXIST, as the kernel answers),
   * an overlay that overlaps another, more than 256 fans.
   */
  add(fan: Fan): void {
    const text = formatCidr(fan.overlay.net, fan.overlay.len);
    for (const other of this.fans) {
      if (other.overlay.net === fan.overlay.net && other.overlay.len === fan.overlay.len) {
        throw new ConfigError('overlay', text, `this fan is already up on this host (EEXIST): ${other}`);
      }
      if (prefixesOverlap(other.overlay, fan.overlay)) {
        throw new ConfigError('overlay', text, `overlaps the overlay of another fan on this host (${other}); overlays must be disjoint`);
      }
    }
    if (this.n >= MAX_FANS) throw new ConfigError('overlay', text, `a host carries at most ${MAX_FANS} fans`);
    const i = this.n++;
    this.oNet[i] = fan.overlay.net;
    this.oMask[i] = fan.overlayMask;
    this.uNet[i] = fan.underlay.net;
    this.uMask[i] = fan.underlayMask;
    this.shift[i] = fan.shift;
    this.uHostMax[i] = fan.underlay.len < 31 ? ~fan.underlayMask >>> 0 : 0;
    this.local[i] = fan.localHost;
    this.slice[i] = fan.localSlice;
    this.sliceMask[i] = fan.sliceMask;
    this.fans.push(fan);
  }

  /** Index of the fan whose overlay holds address d, or -1. */
  fanIndexOf(d: number): number {
    for (let i = 0; i < this.n; i++) {
      if ((d & this.oMask[i]) === this.oNet[i]) return i;
    }
    return -1;
  }

  /**
   * The underlay host that owns overlay address d (where to send a packet for d); NO_FAN when no fan
   * covers d, NO_HOST when d's slice would belong to the underlay's network or broadcast address.
   */
  underlayHostOf(d: number): number {
    for (let i = 0; i < this.n; i++) {
      const m = this.oMask[i];
      if ((d & m) !== this.oNet[i]) continue;
      const hostBits = (d & ~m) >>> this.shift[i];
      const max = this.uHostMax[i];
      if (max !== 0 && (hostBits === 0 || hostBits === max)) return NO_HOST;
      return this.uNet[i] | hostBits;
    }
    return NO_FAN;
  }

  /** This host's underlay address for the fan that holds overlay address d, or NO_FAN. */
  localHostFor(d: number): number {
    const i = this.fanIndexOf(d);
    return i < 0 ? NO_FAN : this.local[i];
  }

  /** Whether d lies in one of this host's own slices. */
  isLocal(d: number): boolean {
    for (let i = 0; i < this.n; i++) {
      if ((d & this.sliceMask[i]) === this.slice[i]) return true;
    }
    return false;
  }

  /** Whether a is one of this host's underlay (outer) addresses. */
  isLocalUnderlay(a: number): boolean {
    const v = a | 0;
    for (let i = 0; i < this.n; i++) if (this.local[i] === v) return true;
    return false;
  }

  /** Whether a lies inside the underlay prefix of any fan. */
  inUnderlay(a: number): boolean {
    for (let i = 0; i < this.n; i++) {
      if ((a & this.uMask[i]) === this.uNet[i]) return true;
    }
    return false;
  }

  /**
   * The receive path's reverse check: does inner source s belong to the slice of the underlay host that
   * sent the outer packet? The Fan's mapping is a function, so this costs one lookup.
   */
  senderOwns(s: number, outerSrc: number): boolean {
    const o = outerSrc | 0;
    return o !== NO_FAN && o !== NO_HOST && this.underlayHostOf(s) === o;
  }

  /** The slice (network number) an underlay host owns in fan i. */
  sliceOfHost(i: number, underlayHost: number): number {
    return this.oNet[i] | ((underlayHost & ~this.uMask[i]) << this.shift[i]);
  }
}
