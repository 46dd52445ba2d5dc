/**
 * An independent decoder agrees with the encoder: packets encapsulate() writes, saved as pcap, are decoded
 * by tshark as IPv4 protocol 4 carrying the inner IPv4 packet, with the expected addresses and no checksum
 * or malformed-packet warnings. And TCP checksums: those fillTcpChecksum() writes, those of the segments
 * segment() cuts from a super-packet, and those of the RFC reference the unit tests judge by
 * (test/helpers/inet-checksum.ts) are good by tshark; a damaged one is bad. CI installs tshark (.ci/setup).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseIPv4 as ip } from '../../src/fan/addr.js';
import { PcapWriter } from '../../src/debug/pcap.js';
import { encapsulate } from '../../src/wire/ipip.js';
import { putU16, putU32 } from '../../src/wire/ipv4.js';
import { fillTcpChecksum } from '../../src/wire/tcp.js';
import { putVnetHdr, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, VNET_HDR_LEN } from '../../src/wire/virtio.js';
import { PacketList } from '../../src/io/batch.js';
import { Arena, segment } from '../../src/tun/segment.js';
import { icmpEcho, ipv4Packet, udpDatagram, withHeadroom } from '../helpers/packets.js';
import { putRefTcpChecksum, refPartialChecksum } from '../helpers/inet-checksum.js';

const dir = mkdtempSync(join(tmpdir(), 'userfan-tshark-'));
afterAll(() => { if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true }); });

/** tshark's reading of `fields` for every packet of a pcap file, one object per packet. */
function tsharkFields(file: string, fields: string[], prefs: string[]): Record<string, string>[] {
  const out = execFileSync('tshark', ['-r', file, '-n', ...prefs.flatMap((p) => ['-o', p]), '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])], { encoding: 'utf8' });
  return out.trim().split('\n').map((l) => Object.fromEntries(l.split('|').map((v, i) => [fields[i], v])));
}

/** A TCP/IPv4 packet (checksum field 0): `optWords` words of TCP options (NOPs), then the payload. */
function tcpSegment(payload: Uint8Array, optWords = 0, seq = 1000): Uint8Array {
  const thl = 20 + 4 * optWords;
  const t = new Uint8Array(thl + payload.length);
  putU16(t, 0, 40000);
  putU16(t, 2, 5201);
  putU32(t, 4, seq);
  putU32(t, 8, 77);
  t[12] = (thl / 4) << 4;
  t[13] = 0x18; // PSH ACK
  putU16(t, 14, 502);
  t.fill(1, 20, thl);
  t.set(payload, thl);
  return ipv4Packet({ src: ip('250.0.28.3'), dst: ip('250.0.27.3'), protocol: 6, df: true, payload: t });
}

const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 131 + seed * 17 + (i >> 8)) & 255);

describe('tshark decodes what the encoder writes', () => {
  it('as IP-in-IP with the mapped addresses, valid checksums and no warnings', () => {
    const file = join(dir, 'encap.pcap');
    const w = new PcapWriter(file);
    const src = ip('250.0.28.3');
    const dst = ip('250.0.27.3');
    const inners = [
      ipv4Packet({ src, dst, protocol: 1, df: true, payload: icmpEcho(0x77, 1, new TextEncoder().encode('userfan ping....')) }),
      ipv4Packet({ src, dst, protocol: 17, tos: 0x02, payload: udpDatagram(src, dst, 40000, 5201, new Uint8Array(1400).fill(0x5a)) }),
      ipv4Packet({ src: ip('250.0.28.200'), dst: ip('250.0.27.9'), protocol: 17, ttl: 1, payload: udpDatagram(ip('250.0.28.200'), ip('250.0.27.9'), 40001, 9, new Uint8Array(3)) }),
    ];
    inners.forEach((p, k) => {
      const b = withHeadroom(p);
      encapsulate(b, 20, p.length, ip('198.18.0.28'), ip('198.18.0.27'), 64, 100 + k);
      w.write(b, 0, b.length, 1_700_000_000_000 + k);
    });
    w.close();

    const fields = ['ip.version', 'ip.proto', 'ip.src', 'ip.dst', 'ip.checksum.status', 'ip.flags.df', 'ip.id', '_ws.expert.severity', '_ws.malformed', 'icmp.checksum.status', 'udp.checksum.status'];
    const out = execFileSync('tshark', ['-r', file, '-n', '-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])], { encoding: 'utf8' });
    const rows = out.trim().split('\n').map((l) => Object.fromEntries(l.split('|').map((v, i) => [fields[i], v])));
    expect(rows).toHaveLength(3);
    for (const [k, r] of rows.entries()) {
      expect(r['ip.version']).toBe('4,4');
      expect(r['ip.proto']).toBe(`4,${k === 0 ? 1 : 17}`);
      expect(r['ip.src']).toBe(k === 2 ? '198.18.0.28,250.0.28.200' : '198.18.0.28,250.0.28.3');
      expect(r['ip.dst']).toBe(k === 2 ? '198.18.0.27,250.0.27.9' : '198.18.0.27,250.0.27.3');
      expect(r['ip.checksum.status']).toBe('1,1'); // 1 = good, outer and inner
      expect(r['ip.id'].split(',')[0]).toBe(`0x${(100 + k).toString(16).padStart(4, '0')}`);
      expect(r['_ws.malformed']).toBe('');
      // Expert info at Warning (0x600000) or Error (0x800000) would mean tshark objects; a Note such as
      // "TTL only 1" on the third packet is tshark being helpful, not a fault.
      const severities = r['_ws.expert.severity'] ? r['_ws.expert.severity'].split(',').map(Number) : [];
      expect(severities.filter((s) => s >= 0x600000)).toEqual([]);
    }
    expect(rows[0]['ip.flags.df']).toBe('1,1'); // DF copied from the inner header
    expect(rows[1]['ip.flags.df']).toBe('0,0');
    expect(rows[0]['icmp.checksum.status']).toBe('1');
    expect(rows[1]['udp.checksum.status']).toBe('1');
  });
});

describe('tshark checks TCP checksums', () => {
  it('those fillTcpChecksum writes, those of segment()\'s segments and the reference\'s are good; a damaged one is bad', () => {
    const file = join(dir, 'tcp.pcap');
    const w = new PcapWriter(file);
    const kinds: string[] = [];
    const add = (kind: string, p: Uint8Array) => {
      w.write(p, 0, p.length, 1_700_000_000_000 + kinds.length);
      kinds.push(kind);
    };
    // fillTcpChecksum: odd and even lengths, with and without options, an empty payload.
    for (const [n, opt] of [[0, 0], [1, 0], [1, 3], [999, 1], [1448, 3]]) {
      const p = tcpSegment(bytes(n, n), opt);
      fillTcpChecksum(p, 0, p.length);
      add('fill', p);
    }
    // The reference the unit tests judge by.
    for (const n of [0, 7, 1400]) {
      const p = tcpSegment(bytes(n, 3 * n));
      putRefTcpChecksum(p);
      add('reference', p);
    }
    // A super-packet as the TUN hands it (partial checksum, virtio-net header), cut by segment().
    const sup = tcpSegment(bytes(5000, 9), 3);
    putU16(sup, 20 + 16, refPartialChecksum(sup, 0, 6));
    const v = new Uint8Array(64 + VNET_HDR_LEN + sup.length);
    putVnetHdr(v, 64, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, 52, 1400, 20, 16);
    v.set(sup, 64 + VNET_HDR_LEN);
    const big = new Uint8Array(new SharedArrayBuffer(256 * 1024));
    big.set(v);
    const out = new PacketList(big, 64);
    const n = segment(big, 64, VNET_HDR_LEN + sup.length, out, new Arena(v.length + 64, big.length), 20);
    expect(n).toBe(4);
    for (let i = 0; i < n; i++) add('segment', Uint8Array.from(out.packet(i)));
    // One whose payload changed after its checksum was written: tshark must call it bad.
    const bad = tcpSegment(bytes(100, 5));
    fillTcpChecksum(bad, 0, bad.length);
    bad[bad.length - 1] ^= 0x40;
    add('damaged', bad);
    w.close();

    const rows = tsharkFields(file, ['ip.proto', 'tcp.len', 'tcp.checksum.status', '_ws.malformed'], ['tcp.check_checksum:TRUE']);
    expect(rows).toHaveLength(kinds.length);
    // tcp.checksum.status: 1 good, 0 bad (2 would be unverified: the check did not run).
    expect(rows.map((r, k) => `${kinds[k]} ${r['ip.proto']} ${r['tcp.checksum.status']} ${r['_ws.malformed']}`)).toEqual(
      kinds.map((k) => `${k} 6 ${k === 'damaged' ? 0 : 1} `),
    );
    expect(rows.filter((_, k) => kinds[k] === 'segment').map((r) => Number(r['tcp.len']))).toEqual([1400, 1400, 1400, 800]);
  });
});
