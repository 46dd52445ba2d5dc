/**
 * Writing packets as a classic pcap file (LINKTYPE_RAW: each record is an IPv4 packet, no link header),
 * which tcpdump, tshark and Wireshark read. Used by `userfan trace` and by the tests that let tshark judge
 * what the encoder wrote.
 */
import { openSync, writeSync, closeSync } from 'node:fs';

export const LINKTYPE_RAW = 101;
const SNAPLEN = 262144;

/** The 24-byte global header. */
export function pcapFileHeader(): Uint8Array {
  const h = new Uint8Array(24);
  const v = new DataView(h.buffer);
  v.setUint32(0, 0xa1b2c3d4, true); // magic, microsecond timestamps, little-endian
  v.setUint16(4, 2, true);
  v.setUint16(6, 4, true);
  v.setInt32(8, 0, true);
  v.setUint32(12, 0, true);
  v.setUint32(16, SNAPLEN, true);
  v.setUint32(20, LINKTYPE_RAW, true);
  return h;
}

/** A 16-byte record header for `len` captured bytes (of `origLen` on the wire) at `timeMs` (epoch ms, fractional ok). */
export function pcapRecordHeader(len: number, timeMs: number, origLen = len): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  const sec = Math.floor(timeMs / 1000);
  v.setUint32(0, sec, true);
  v.setUint32(4, Math.floor((timeMs - sec * 1000) * 1000), true);
  v.setUint32(8, Math.min(len, SNAPLEN), true);
  v.setUint32(12, Math.max(origLen, len), true);
  return h;
}

/** Appends packets to a pcap file. */
export class PcapWriter {
  private fd: number;
  count = 0;
  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
    writeSync(this.fd, pcapFileHeader());
  }
  /** bytes[off, off+len) captured at timeMs, of a packet that was origLen long (longer when it was cut). */
  write(bytes: Uint8Array, off: number, len: number, timeMs = Date.now(), origLen = len): void {
    writeSync(this.fd, pcapRecordHeader(len, timeMs, origLen));
    writeSync(this.fd, bytes, off, Math.min(len, SNAPLEN));
    this.count++;
  }
  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
