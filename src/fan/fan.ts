/**
 * A Fan: an overlay prefix O/o spread over an underlay prefix U/u. Every underlay host owns the overlay
 * slice of length o + (32 - u) whose next bits are the host bits of its underlay address, exactly as the
 * Fan-patched Linux ipip driver computes it:
 *
 *   250.0.0.0/8 over 172.30.0.0/16: 172.30.0.28 owns 250.0.28.0/24
 *   underlay host of d = U | ((d & ~maskO) >>> (32 - o - (32 - u)))
 *
 * This module is the readable, allocation-happy description of one fan (for the control plane and for
 * people). The per-packet form is FanTable (table.ts).
 */
import { formatCidr, formatIPv4, prefixMask } from './addr.js';
import { ConfigError } from './errors.js';

/** A prefix as numbers. */
export interface Prefix {
  readonly net: number;
  readonly len: number;
}

export interface FanFlags {
  /** `dhcp`: serve the slice to containers with dnsmasq. */
  readonly dhcp: boolean;
  /** `off`: defined in the config file but not brought up by `up -a`. */
  readonly off: boolean;
  /** `host-reserve N`: the host keeps .1–.N of its slice (default 1: just the bridge address). */
  readonly hostReserve: number;
  /** `bridge NAME`: a bridge name of the user's instead of fan-A-B-C. */
  readonly bridge?: string;
  /** The wire type: IP-in-IP (default, fanctl's original) or VXLAN (LXD's fan bridges, fanctl 0.9+). */
  readonly type?: FanType;
  /**
   * `--enable` (fanctl 0.12's config lines): kept to be shown, as 0.12 shows it. Whether 0.12 skips lines
   * without it is unconfirmed; userfan brings up every line that is not `off`, as 0.3 did.
   */
  readonly enable?: boolean;
  /** Brought up by `up -a` from the config file: `show` says `auto`, as 0.12 does. */
  readonly auto?: boolean;
}

export const FAN_TYPES = ['ipip', 'vxlan'] as const;
export type FanType = (typeof FAN_TYPES)[number];
/** Bytes each type adds in front of what the bridge sends: an IPv4 header; IPv4 + UDP + VXLAN + Ethernet. */
export const TYPE_OVERHEAD: Record<FanType, number> = { ipip: 20, vxlan: 50 };

export const DEFAULT_FLAGS: FanFlags = { dhcp: false, off: false, hostReserve: 1 };

/** The longest slice that still leaves room for the bridge address and at least one container. */
export const MAX_SLICE_LEN = 30;

export class Fan {
  /** Prefix length of every host's slice: o + (32 - u). */
  readonly sliceLen: number;
  /** How far the underlay host bits shift into the overlay: 32 - sliceLen. */
  readonly shift: number;

  constructor(
    readonly overlay: Prefix,
    readonly underlay: Prefix,
    /** This host's underlay address (inside the underlay prefix). */
    readonly localHost: number,
    readonly flags: FanFlags = DEFAULT_FLAGS,
  ) {
    this.sliceLen = overlay.len + (32 - underlay.len);
    this.shift = 32 - this.sliceLen;
  }

  get overlayMask(): number {
    return prefixMask(this.overlay.len);
  }
  get underlayMask(): number {
    return prefixMask(this.underlay.len);
  }
  get sliceMask(): number {
    return prefixMask(this.sliceLen);
  }

  /** The slice (network number) an underlay host owns. */
  sliceOf(underlayHost: number): number {
    const hostBits = (underlayHost & ~this.underlayMask) >>> 0;
    return (this.overlay.net | (hostBits << this.shift)) >>> 0;
  }

  /** This host's own slice. */
  get localSlice(): number {
    return this.sliceOf(this.localHost);
  }

  /** The underlay host that owns overlay address d, or undefined when d is outside the overlay. */
  underlayHostOf(d: number): number | undefined {
    if (((d & this.overlayMask) >>> 0) !== this.overlay.net) return undefined;
    return (this.underlay.net | ((d & ~this.overlayMask) >>> this.shift)) >>> 0;
  }

  /** The address the bridge holds: the slice's .1. */
  get hostAddress(): number {
    return (this.localSlice + 1) >>> 0;
  }

  /** The first address handed to containers (after host-reserve). */
  get firstContainerAddress(): number {
    return (this.localSlice + this.flags.hostReserve + 1) >>> 0;
  }

  /** The last usable address of the slice (before its broadcast address). */
  get lastContainerAddress(): number {
    return (this.localSlice + 2 ** this.shift - 2) >>> 0;
  }

  get type(): FanType {
    return this.flags.type ?? 'ipip';
  }

  /**
   * The bridge's name: the user's, or fanctl's: `fan-250-0-28` for slice 250.0.28.0/24 (IP-in-IP), or
   * after the overlay, `fan-250` for 250.0.0.0/8 (VXLAN: the whole overlay is one L2 segment).
   */
  get bridge(): string {
    if (this.flags.bridge) return this.flags.bridge;
    return this.type === 'vxlan' ? bridgeNameFor(this.overlay.net, this.overlay.len) : bridgeNameFor(this.localSlice, this.sliceLen);
  }

  /** The prefix length of the bridge's address: the slice's (IP-in-IP), the overlay's (VXLAN). */
  get bridgePrefixLen(): number {
    return this.type === 'vxlan' ? this.overlay.len : this.sliceLen;
  }

  /** A short, stable id for this fan on this host (state files, table names): the bridge name. */
  get id(): string {
    return this.bridge;
  }

  toString(): string {
    return `${formatCidr(this.overlay.net, this.overlay.len)} over ${formatCidr(this.underlay.net, this.underlay.len)}`;
  }

  describe() {
    return {
      overlay: formatCidr(this.overlay.net, this.overlay.len),
      underlay: formatCidr(this.underlay.net, this.underlay.len),
      localHost: formatIPv4(this.localHost),
      slice: formatCidr(this.localSlice, this.sliceLen),
      bridge: this.bridge,
      hostAddress: formatIPv4(this.hostAddress),
      flags: this.flags,
    };
  }
}

/**
 * fanctl names a fan bridge after the host's slice: the slice's significant octets joined by dashes,
 * `fan-250-0-28` for 250.0.28.0/24. Linux interface names have at most 15 characters, so a slice longer
 * than /24 whose name would not fit is named by its hex address instead (`fan-fa001c40`).
 */
export function bridgeNameFor(slice: number, sliceLen: number): string {
  const octets = Math.max(1, Math.ceil(sliceLen / 8));
  const parts: number[] = [];
  for (let i = 0; i < octets; i++) parts.push((slice >>> (24 - 8 * i)) & 255);
  const name = `fan-${parts.join('-')}`;
  return name.length <= 15 ? name : `fan-${slice.toString(16).padStart(8, '0')}`;
}

/**
 * Check the widths and addresses of a fan; throws ConfigError naming the field and the rule.
 * `overlayText`/`underlayText` are what the user wrote, for the message.
 */
export function validateFan(fan: Fan, overlayText: string, underlayText: string): void {
  const { overlay, underlay } = fan;
  const pair = `${overlayText} over ${underlayText}`;
  if (fan.sliceLen > MAX_SLICE_LEN) {
    throw new ConfigError(
      'fan',
      pair,
      `each host's slice would be /${fan.sliceLen} (overlay /${overlay.len} + 32 - underlay /${underlay.len}); ` +
        `it must be /${MAX_SLICE_LEN} or shorter to hold the bridge address and a container: widen the overlay or narrow the underlay`,
    );
  }
  const uHostBits = (fan.localHost & ~fan.underlayMask) >>> 0;
  const uHostMax = (~fan.underlayMask) >>> 0;
  if (underlay.len < 31 && (uHostBits === 0 || uHostBits === uHostMax)) {
    throw new ConfigError(
      'underlay',
      underlayText,
      `${formatIPv4(fan.localHost)} is the ${uHostBits === 0 ? 'network' : 'broadcast'} address of ` +
        `${formatCidr(underlay.net, underlay.len)}; give this host's own address, e.g. ${formatIPv4(underlay.net + 1)}/${underlay.len}`,
    );
  }
  const size = 2 ** fan.shift;
  if (fan.flags.hostReserve < 1 || fan.flags.hostReserve > size - 3) {
    throw new ConfigError(
      'host-reserve',
      String(fan.flags.hostReserve),
      `must be between 1 and ${size - 3} for a /${fan.sliceLen} slice (the host keeps .1–.N, containers need at least one address)`,
    );
  }
}
