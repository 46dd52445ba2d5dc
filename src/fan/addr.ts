/**
 * IPv4 addresses as unsigned 32-bit numbers: a.b.c.d = (a << 24 | b << 16 | c << 8 | d) >>> 0.
 * This is the representation the per-packet path uses (no strings, no objects); the helpers here
 * convert at the edges.
 */

/** The netmask of a prefix length as an unsigned 32-bit number (len 0 gives 0). */
export function prefixMask(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** Dotted quad to uint32; throws on anything that is not four decimal octets. */
export function parseIPv4(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${text}`);
  let v = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new Error(`not an IPv4 address: ${text}`);
    v = v * 256 + Number(p);
  }
  return v >>> 0;
}

/** uint32 to dotted quad. */
export function formatIPv4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** "a.b.c.d/len" for a network number and a prefix length. */
export function formatCidr(net: number, len: number): string {
  return `${formatIPv4(net)}/${len}`;
}
