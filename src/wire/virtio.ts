/**
 * The virtio-net header (struct virtio_net_hdr, virtio 1.x, 10 bytes, little-endian) that a TUN queue
 * opened with IFF_VNET_HDR puts in front of every packet it reads and expects in front of every packet
 * written to it. It says how the kernel's offloads apply to the packet:
 *
 *   0        1          2      4         6          8           10
 *  +--------+----------+------+---------+----------+-----------+
 *  | flags  | gso_type | hdr_ | gso_    | csum_    | csum_     |
 *  |        |          | len  | size    | start    | offset    |
 *  +--------+----------+------+---------+----------+-----------+
 *
 *  - flags NEEDS_CSUM: the transport checksum is unfinished: sum from csum_start to the end, the field
 *    at csum_start + csum_offset included (it holds the pseudo-header sum), and store the complement there.
 *    DATA_VALID: the checksum was already verified (reads only).
 *  - gso_type TCPV4 (| ECN): a TCP super-packet to be cut into gso_size-byte payloads; hdr_len is the
 *    length of the headers (the kernel's reads fill it with its linear length, only a hint: do not trust it).
 *
 * The multi-byte fields are little-endian on x86 and arm64 (the kernel's "legacy" endianness there and the
 * virtio 1.0 one agree), so they are read and written as such.
 */

export const VNET_HDR_LEN = 10;

export const VNET_F_NEEDS_CSUM = 1;
export const VNET_F_DATA_VALID = 2;

export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_UDP = 3;
export const VNET_GSO_TCPV6 = 4;
export const VNET_GSO_UDP_L4 = 5;
export const VNET_GSO_ECN = 0x80;

export const OFF_VNET_FLAGS = 0;
export const OFF_VNET_GSO_TYPE = 1;
export const OFF_VNET_HDR_LEN = 2;
export const OFF_VNET_GSO_SIZE = 4;
export const OFF_VNET_CSUM_START = 6;
export const OFF_VNET_CSUM_OFFSET = 8;

const le16 = (b: Uint8Array, o: number): number => b[o] | (b[o + 1] << 8);
const putLe16 = (b: Uint8Array, o: number, v: number): void => {
  b[o] = v;
  b[o + 1] = v >>> 8;
};

export const vnetFlags = (b: Uint8Array, v: number): number => b[v + OFF_VNET_FLAGS];
export const vnetGsoType = (b: Uint8Array, v: number): number => b[v + OFF_VNET_GSO_TYPE];
export const vnetHdrLen = (b: Uint8Array, v: number): number => le16(b, v + OFF_VNET_HDR_LEN);
export const vnetGsoSize = (b: Uint8Array, v: number): number => le16(b, v + OFF_VNET_GSO_SIZE);
export const vnetCsumStart = (b: Uint8Array, v: number): number => le16(b, v + OFF_VNET_CSUM_START);
export const vnetCsumOffset = (b: Uint8Array, v: number): number => le16(b, v + OFF_VNET_CSUM_OFFSET);

/** Writes a whole header at v. */
export function putVnetHdr(
  b: Uint8Array, v: number, flags: number, gsoType: number, hdrLen: number, gsoSize: number, csumStart: number, csumOffset: number,
): void {
  b[v + OFF_VNET_FLAGS] = flags;
  b[v + OFF_VNET_GSO_TYPE] = gsoType;
  putLe16(b, v + OFF_VNET_HDR_LEN, hdrLen);
  putLe16(b, v + OFF_VNET_GSO_SIZE, gsoSize);
  putLe16(b, v + OFF_VNET_CSUM_START, csumStart);
  putLe16(b, v + OFF_VNET_CSUM_OFFSET, csumOffset);
}

/** Writes the header of a plain packet: no flags, GSO_NONE, zeros. */
export function putVnetNone(b: Uint8Array, v: number): void {
  for (let i = 0; i < VNET_HDR_LEN; i++) b[v + i] = 0;
}
