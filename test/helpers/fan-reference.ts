/**
 * The Fan mapping written again from its rule, for tests to judge src/fan/ by: nothing here is imported
 * from src/. Plain arithmetic on non-negative numbers (division and remainder by powers of two) where the
 * product uses int32 masks and shifts, so the two share no code and no trick.
 *
 * The rule (README, "How it works"; ../shared/REFERENCE.md): a fan spreads the overlay O/o over the
 * underlay U/u. The host with underlay address H owns the overlay slice of length o + (32 - u) whose bits
 * after the overlay's o bits are H's host bits (its last 32 - u bits). So the owner of overlay address d is
 * the underlay address whose network part is U's and whose host part is the 32 - u bits of d after its
 * first o. No host owns a slice whose host part would be the underlay's network (all zeros) or broadcast
 * (all ones) address, for underlays of /30 and wider.
 */

export interface RefFan {
  overlayNet: number;
  overlayLen: number;
  /** This host's underlay address. */
  host: number;
  underlayLen: number;
}

/** a.b.c.d as a non-negative number. */
export function refAddress(text: string): number {
  const parts = text.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`not an IPv4 address: ${text}`);
  return ((parts[0] * 256 + parts[1]) * 256 + parts[2]) * 256 + parts[3];
}

/** A fan as `-o OVERLAY -u HOST/LEN` write it. */
export function refFan(overlay: string, underlay: string): RefFan {
  const [o, ol] = overlay.split('/');
  const [u, ul] = underlay.split('/');
  return { overlayNet: refAddress(o), overlayLen: Number(ol), host: refAddress(u), underlayLen: Number(ul) };
}

/** The top `bits` bits of address a, as a number. */
const top = (a: number, bits: number) => Math.floor(a / 2 ** (32 - bits));

/** The underlay host that owns overlay address d, or null: d outside the overlay, or a slice no host can own. */
export function refOwner(f: RefFan, d: number): number | null {
  const a = d >>> 0;
  if (top(a, f.overlayLen) !== top(f.overlayNet, f.overlayLen)) return null;
  const hostBits = 32 - f.underlayLen;
  const hostPart = top(a, f.overlayLen + hostBits) % 2 ** hostBits;
  if (f.underlayLen < 31 && (hostPart === 0 || hostPart === 2 ** hostBits - 1)) return null;
  return top(f.host, f.underlayLen) * 2 ** hostBits + hostPart;
}

/** Whether overlay address d lies in this host's own slice. */
export function refIsLocal(f: RefFan, d: number): boolean {
  return refOwner(f, d) === f.host;
}

/** Whether an inner source s may arrive from the underlay host outerSrc (s lies in outerSrc's slice). */
export function refSenderOwns(f: RefFan, s: number, outerSrc: number): boolean {
  return refOwner(f, s) === outerSrc >>> 0;
}
