/**
 * A hostile host on the underlay, for the robustness tests: sends protocol-4 packets that a Fan host must
 * drop, each kind aimed at one check, round-robin, in batches on a raw socket, paced and bounded.
 * Prints {"sent": {kind: count}, "expect": {dropReason: count}} so a test can hold the victim's drop
 * counters to account. The outer header is well formed (the kernel rewrites its length and checksum for
 * IP_HDRINCL sockets), so every packet reaches the victim's raw sockets; malformed outer headers are
 * the kernel's to drop and are covered by the unit and fuzz tests.
 *
 *   ip netns exec H node dist/src/lab/hostile.js --self 198.18.0.99 --victim 198.18.0.27 \
 *       --container 250.0.27.3 --port 9999 --count 200000 --pps 40000
 */
import { parseIPv4 as ip } from '../fan/addr.js';
import { PacketBatch } from '../io/batch.js';
import { RawIpipSocket } from '../underlay/raw-socket.js';
import { ipv4Packet, udpDatagram } from '../wire/build.js';
import { checksum } from '../wire/checksum.js';
import { encapsulate } from '../wire/ipip.js';
import { putU16 } from '../wire/ipv4.js';

export interface HostileOptions {
  self: number; // this host's underlay address (198.18.0.99 owns 250.0.99.0/24 in 250.0.0.0/8)
  victim: number; // the target host's underlay address
  container: number; // a container on the victim
  port: number; // a UDP port a listener watches there
  count: number;
  pps: number;
}

interface Kind {
  name: string;
  reason: string;
  bytes: Uint8Array; // the whole outer packet
}

/** One template per check, each an outer packet from `self` to the victim. */
export function hostileKinds(o: HostileOptions): Kind[] {
  const mine = (ip('250.0.0.0') | (((o.self & 0xffff) >>> 0) << 8) | 7) >>> 0; // an address of self's own slice
  const victimSlice = (o.container & 0xffffff00) >>> 0;
  const stolen = (ip('250.0.0.0') | (((ip('198.18.0.28') & 0xffff) >>> 0) << 8) | 5) >>> 0; // A's slice: not ours to use
  const udp = (src: number, dst: number) => udpDatagram(src, dst, 31337, o.port, new TextEncoder().encode('hostile'));
  const wrap = (inner: Uint8Array, outerSrc = o.self, tosOuter?: number) => {
    const b = new Uint8Array(20 + inner.length);
    b.set(inner, 20);
    encapsulate(b, 20, inner.length, outerSrc, o.victim, 64, 1);
    if (tosOuter !== undefined) {
      b[1] = tosOuter;
      putU16(b, 10, 0);
      putU16(b, 10, checksum(b, 0, 20));
    }
    return b;
  };
  const good = (src = mine, dst = o.container) => ipv4Packet({ src, dst, protocol: 17, payload: udp(src, dst) });
  const kinds: Kind[] = [
    { name: 'spoofed-inner-source', reason: 'rx-spoofed-source', bytes: wrap(good(stolen)) },
    { name: 'outer-source-off-underlay', reason: 'rx-outer-source-not-underlay', bytes: wrap(good(), ip('198.19.0.1')) },
    { name: 'inner-destination-not-local', reason: 'rx-not-local', bytes: wrap(good(mine, (victimSlice ^ 0x4200) >>> 0)) },
    { name: 'foreign-overlay', reason: 'rx-foreign-overlay', bytes: wrap(good(mine, ip('251.0.0.1'))) },
    { name: 'loop', reason: 'rx-loop', bytes: wrap(ipv4Packet({ src: o.victim, dst: o.container, protocol: 17, payload: udp(o.victim, o.container) })) },
    { name: 'inner-ttl-zero', reason: 'rx-inner-ttl-zero', bytes: wrap(ipv4Packet({ src: mine, dst: o.container, ttl: 0, protocol: 17, payload: udp(mine, o.container) })) },
    { name: 'ecn-ce-over-not-ect', reason: 'rx-ecn-ce-not-ect', bytes: wrap(good(), o.self, 0x03) },
  ];
  const badSum = good();
  badSum[10] ^= 0xff;
  kinds.push({ name: 'bad-inner-checksum', reason: 'rx-bad-inner-checksum', bytes: wrap(badSum) });
  const v6 = good();
  v6[0] = 0x65;
  kinds.push({ name: 'inner-not-ipv4', reason: 'rx-inner-not-ipv4', bytes: wrap(v6) });
  const badLen = good();
  putU16(badLen, 2, badLen.length + 9);
  putU16(badLen, 10, 0);
  putU16(badLen, 10, checksum(badLen, 0, 20));
  kinds.push({ name: 'inner-length-lies', reason: 'rx-bad-inner-length', bytes: wrap(badLen) });
  kinds.push({ name: 'truncated-inner', reason: 'rx-truncated-inner', bytes: wrap(good().subarray(0, 12)) });
  const ihl = good();
  ihl[0] = 0x43;
  kinds.push({ name: 'inner-ihl-3', reason: 'rx-bad-inner-ihl', bytes: wrap(ihl) });
  return kinds;
}

export async function sendHostile(o: HostileOptions): Promise<{ sent: Record<string, number>; expect: Record<string, number>; refused: number; seconds: number }> {
  const kinds = hostileKinds(o);
  const sock = RawIpipSocket.open({ sndbuf: 8 << 20 });
  const batch = new PacketBatch({ slots: 64 });
  const sent: Record<string, number> = {};
  const expect: Record<string, number> = {};
  const t0 = Date.now();
  let done = 0;
  try {
    while (done < o.count) {
      const list = batch.outgoing;
      list.clear();
      const n = Math.min(64, o.count - done);
      for (let i = 0; i < n; i++) {
        const k = kinds[(done + i) % kinds.length];
        const off = i * batch.slotSize + batch.headroom;
        batch.bytes.set(k.bytes, off);
        putU16(batch.bytes, off + 4, (done + i) & 0xffff); // a fresh outer ID
        list.push(off, k.bytes.length, o.victim);
      }
      let from = 0;
      for (let tries = 0; from < n && tries < 1000; tries++) {
        from = sock.send(list, from);
        if (from < n) await new Promise((r) => setTimeout(r, 1));
      }
      for (let i = 0; i < from; i++) {
        const k = kinds[(done + i) % kinds.length];
        sent[k.name] = (sent[k.name] ?? 0) + 1;
        expect[k.reason] = (expect[k.reason] ?? 0) + 1;
      }
      done += n;
      // Pace: never ahead of the requested rate.
      const ahead = done / o.pps - (Date.now() - t0) / 1000;
      if (ahead > 0.002) await new Promise((r) => setTimeout(r, ahead * 1000));
    }
  } finally {
    sock.close();
  }
  return { sent, expect, refused: sock.errors.total, seconds: (Date.now() - t0) / 1000 };
}

function arg(name: string, def?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) {
    if (def === undefined) throw new Error(`missing --${name}`);
    return def;
  }
  return process.argv[i + 1];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  sendHostile({
    self: ip(arg('self')), victim: ip(arg('victim')), container: ip(arg('container')), port: Number(arg('port', '9999')),
    count: Number(arg('count', '200000')), pps: Number(arg('pps', '40000')),
  }).then((r) => console.log(JSON.stringify(r)), (e) => {
    console.error(e);
    process.exit(1);
  });
}
