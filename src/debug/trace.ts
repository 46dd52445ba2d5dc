/**
 * `userfan trace [-w FILE] [--count N] [--seconds S] [--filter ADDRESS]`: a live capture from the running
 * daemons. Each daemon streams copies of the packets its workers move (src/debug/trace-server.ts): an
 * IP-in-IP packet as sent or as received, outer header and inner packet, or an inner packet the mapping
 * dropped on its way out, each with its verdict (the VXLAN type: outer IPv4, UDP, VXLAN, the Ethernet
 * frame; a frame dropped on its way out in VXLAN to 0.0.0.0). With -w the client writes them as a pcap file
 * (LINKTYPE_RAW), which tshark and Wireshark read; otherwise one line per packet, dropped ones with their
 * reason. Always bounded: --count (default 100) and --seconds (default 10).
 */
import { connect, type Socket } from 'node:net';
import { formatIPv4 } from '../fan/addr.js';
import { dropName } from '../wire/drops.js';
import { headerLength, u32 } from '../wire/ipv4.js';
import { socketPath } from '../control/state.js';
import { PcapWriter } from './pcap.js';
import { END, FRAME_HEADER, TRACE_MAGIC, type TraceRequest } from '../control/trace-server.js';
import { TRACE_IN } from '../io/trace-ring.js';

const PROTOCOLS: Record<number, string> = { 1: 'ICMP', 4: 'IPIP', 6: 'TCP', 17: 'UDP' };

/** One line for a captured packet: time, direction, outer header, inner packet, verdict. */
export function describePacket(p: Uint8Array, seconds: number, micros: number, direction: number, verdict: number, originalLength = p.length): string {
  const t = `${new Date(seconds * 1000).toISOString().slice(11, 19)}.${String(micros).padStart(6, '0')}`;
  const dir = direction === TRACE_IN ? 'in ' : 'out';
  const end = verdict ? `  DROPPED ${dropName(verdict)}` : '';
  if (p.length < 20) return `${t} ${dir} (${originalLength} bytes)${end}`;
  const proto = p[9];
  const head = `${formatIPv4(u32(p, 12))} > ${formatIPv4(u32(p, 16))}`;
  const ohl = headerLength(p, 0);
  const vxlan = proto === 17 ? describeVxlan(p, ohl) : '';
  if (vxlan) return `${t} ${dir} ${head} ${vxlan}${end}`;
  if (proto !== 4 || p.length < ohl + 20) return `${t} ${dir} ${head} ${PROTOCOLS[proto] ?? `proto ${proto}`} length ${originalLength}${end}`;
  const i = ohl;
  const innerProto = p[i + 9];
  return `${t} ${dir} ${head} IPIP | ${formatIPv4(u32(p, i + 12))} > ${formatIPv4(u32(p, i + 16))} ${PROTOCOLS[innerProto] ?? `proto ${innerProto}`} length ${originalLength - ohl}${end}`;
}

/**
 * "VXLAN 16384000 | INNER" for a UDP datagram whose payload is a VXLAN header (I flag, reserved bytes 0)
 * and an Ethernet frame: INNER is "ARP who-has T tell S" (or "ARP reply"), or "S > D PROTO" for IPv4; ''
 * for anything else.
 */
function describeVxlan(p: Uint8Array, ohl: number): string {
  const x = ohl + 8;
  if (p.length < x + 8 + 14 || p[x] !== 0x08 || p[x + 1] !== 0 || p[x + 2] !== 0 || p[x + 3] !== 0 || p[x + 7] !== 0) return '';
  const vni = (p[x + 4] << 16) | (p[x + 5] << 8) | p[x + 6];
  const f = x + 8;
  const type = (p[f + 12] << 8) | p[f + 13];
  const i = f + 14;
  let inner = `ethertype 0x${type.toString(16).padStart(4, '0')}`;
  if (type === 0x0806 && p.length >= i + 28) {
    const op = (p[i + 6] << 8) | p[i + 7];
    inner = op === 1 ? `ARP who-has ${formatIPv4(u32(p, i + 24))} tell ${formatIPv4(u32(p, i + 14))}` : `ARP reply ${formatIPv4(u32(p, i + 14))} is-at ${[...p.subarray(i + 8, i + 14)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
  } else if (type === 0x0800 && p.length >= i + 20) {
    inner = `${formatIPv4(u32(p, i + 12))} > ${formatIPv4(u32(p, i + 16))} ${PROTOCOLS[p[i + 9]] ?? `proto ${p[i + 9]}`}`;
  }
  return `UDP VXLAN ${vni} | ${inner}`;
}

export interface TraceResult {
  packets: number;
  /** Copies the daemons could not capture (ring or stream full). */
  dropped: number;
  /** Daemons that refused or failed, with why. */
  errors: string[];
}

/** Reads one daemon's stream; calls onFrame per packet until the end frame, then resolves with the trailer. */
function readStream(sock: Socket, onFrame: (f: Buffer) => boolean): Promise<Omit<TraceResult, 'errors'>> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let started = false;
    let trailer: Buffer | undefined;
    sock.on('data', (d: Buffer) => {
      if (trailer) {
        trailer = Buffer.concat([trailer, d]);
        return;
      }
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      if (!started) {
        if (buf[0] === 0x7b /* { */) return; // an error answer: read to the end
        if (buf.length < TRACE_MAGIC.length) return;
        if (!buf.subarray(0, TRACE_MAGIC.length).equals(TRACE_MAGIC)) {
          sock.destroy(new Error('trace: the daemon answered with something other than a trace stream'));
          return;
        }
        buf = buf.subarray(TRACE_MAGIC.length);
        started = true;
      }
      while (buf.length >= FRAME_HEADER) {
        const cap = buf.readUInt32LE(0);
        if (cap === END) {
          trailer = buf.subarray(FRAME_HEADER);
          return;
        }
        if (buf.length < FRAME_HEADER + cap) return;
        const more = onFrame(buf.subarray(0, FRAME_HEADER + cap));
        buf = buf.subarray(FRAME_HEADER + cap);
        if (!more) {
          sock.destroy();
          return;
        }
      }
    });
    sock.on('error', reject);
    sock.on('close', () => {
      if (!started) {
        let error = 'the daemon closed the connection';
        try {
          error = (JSON.parse(buf.toString()) as { error?: string }).error ?? error;
        } catch {}
        reject(new Error(error));
        return;
      }
      let info: Partial<TraceResult> = {};
      try {
        info = trailer ? JSON.parse(trailer.toString()) : {};
      } catch {}
      resolve({ packets: info.packets ?? 0, dropped: info.dropped ?? 0 });
    });
  });
}

/**
 * Attach to the daemons `ids` (all of this network namespace's) at once and take at most req.count
 * packets in all, for at most req.seconds. With `file`, write a pcap file; otherwise call onLine per packet.
 */
export async function trace(ids: string[], req: TraceRequest, file: string | undefined, onLine: (line: string) => void): Promise<TraceResult> {
  const pcap = file ? new PcapWriter(file) : undefined;
  try {
    let packets = 0;
    const socks = ids.map((id) => connect(socketPath(id)));
    const onFrame = (f: Buffer): boolean => {
      if (packets >= req.count) return false;
      const cap = f.readUInt32LE(0);
      const orig = f.readUInt32LE(4);
      const sec = f.readUInt32LE(8);
      const usec = f.readUInt32LE(12);
      const what = f.readUInt32LE(16);
      const bytes = f.subarray(FRAME_HEADER, FRAME_HEADER + cap);
      if (pcap) pcap.write(bytes, 0, cap, sec * 1000 + usec / 1000, orig);
      else onLine(describePacket(bytes, sec, usec, what & 0xff, what >>> 8, orig));
      packets++;
      if (packets >= req.count) {
        for (const s of socks) s.destroy();
        return false;
      }
      return true;
    };
    // A guard in case a daemon never ends its stream.
    const guard = setTimeout(() => socks.forEach((s) => s.destroy()), (req.seconds + 5) * 1000);
    try {
      const results = await Promise.allSettled(
        socks.map((s) => {
          s.on('connect', () => s.write(`${JSON.stringify(req)}\n`));
          return readStream(s, onFrame);
        }),
      );
      const errors = results.flatMap((r, k) => (r.status === 'rejected' ? [`${ids[k]}: ${(r.reason as Error).message}`] : []));
      if (errors.length === ids.length) throw new Error(errors.join('; '));
      const dropped = results.reduce((n, r) => n + (r.status === 'fulfilled' ? r.value.dropped : 0), 0);
      return { packets, dropped, errors };
    } finally {
      clearTimeout(guard);
    }
  } finally {
    pcap?.close();
  }
}
