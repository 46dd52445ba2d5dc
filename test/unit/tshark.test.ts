/**
 * An independent decoder agrees with the encoder: packets encapsulate() writes, saved as pcap, are decoded
 * by tshark as IPv4 protocol 4 carrying the inner IPv4 packet, with the expected addresses and no checksum
 * or malformed-packet warnings. CI installs tshark (.ci/setup).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseIPv4 as ip } from '../../src/fan/addr.js';
import { PcapWriter } from '../../src/debug/pcap.js';
import { encapsulate } from '../../src/wire/ipip.js';
import { icmpEcho, ipv4Packet, udpDatagram, withHeadroom } from '../helpers/packets.js';

const dir = mkdtempSync(join(tmpdir(), 'userfan-tshark-'));
afterAll(() => { if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true }); });

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
