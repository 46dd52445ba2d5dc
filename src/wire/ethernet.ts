/** The Ethernet II header (IEEE 802.3): destination MAC, source MAC, EtherType; 14 bytes. */
export const ETH_HLEN = 14;
export const ETH_P_IP = 0x0800;
export const ETH_P_ARP = 0x0806;
/** Where an Ethernet frame's fields start. */
export const OFF_ETH_SRC = 6;
export const OFF_ETH_TYPE = 12;

/** Writes a MAC kept as two int32s (bytes 0–3 big-endian, bytes 4–5) at b[at, at + 6). */
export function putMac(b: Uint8Array, at: number, hi: number, lo: number): void {
  b[at] = hi >>> 24;
  b[at + 1] = hi >>> 16;
  b[at + 2] = hi >>> 8;
  b[at + 3] = hi;
  b[at + 4] = lo >>> 8;
  b[at + 5] = lo;
}

/** Writes an Ethernet header at b[e, e + 14). */
export function putEthernet(b: Uint8Array, e: number, dstHi: number, dstLo: number, srcHi: number, srcLo: number, type: number): void {
  putMac(b, e, dstHi, dstLo);
  putMac(b, e + 6, srcHi, srcLo);
  b[e + 12] = type >>> 8;
  b[e + 13] = type & 0xff;
}
