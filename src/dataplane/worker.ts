/**
 * A data-plane worker (a piscina task that runs until told to stop): it owns one TUN queue and one raw
 * IP-in-IP socket that receives its hash share of arriving packets, and moves packets both ways in
 * batches:
 *
 *   TUN read (≤64) → egressRoute + encapsulate in place → sendmmsg on the raw socket
 *   recvmmsg (≤64) → decapsulate (checks, anti-spoofing, ECN) → TUN write
 *
 * With offloads (task.offload, decided by the daemon: src/offload/probe.ts) the TUN queue carries a
 * virtio-net header on every packet and the kernel hands over TCP super-packets of up to 64 KiB:
 *
 *   TUN read (≤16 × 64 KiB) → egressRoute → segment into gso_size segments (src/offload/segment.ts)
 *     → encapsulate each → sendmmsg
 *   recvmmsg (≤64) → decapsulate → coalesce same-flow segments into super-packets
 *     (src/offload/coalesce.ts) → TUN write, each packet behind a virtio-net header
 *
 * Receive slots are 64 KiB in both modes: where the underlay's GRO joins IP-in-IP packets (a NIC's GRO
 * does, and a veth's with NAPI), a protocol-4 raw socket receives them joined, up to 64 KiB, with a
 * partial inner TCP checksum; so does one whose kernel peer sends CHECKSUM_PARTIAL packets over veth.
 * Those are passed on with NEEDS_CSUM (offloads on) or finished and cut here (offloads off).
 *
 * While `userfan trace` is attached, packets (or those to or from one address) are copied into this
 * worker's trace ring with their verdict: as sent, as received (before the checks), and those the mapping
 * drops. With no trace attached that costs one Atomics load per round.
 *
 * With `up --recv xdp` (task.xsk) the IP-in-IP frames of this worker's RX queue arrive on an AF_XDP socket
 * (src/io/xdp.ts) instead, read off its ring without a system call while it has frames; the raw socket
 * still takes what the XDP program leaves to the kernel (fragments, outer options, other queues).
 *
 * With `up --send packet` (task.neighbours) a packet whose outer destination is a known underlay
 * neighbour (src/io/neighbours.ts) goes out through a link-layer socket straight to its MAC
 * (src/io/linksocket.ts); the others, and each neighbour's probe packet, through the raw socket.
 *
 * It never waits for a batch to fill: whatever one read returns goes out at once. Nothing is allocated
 * per packet: batches, lists, arenas and counters are made once, before the loop.
 */
import { readFileSync } from 'node:fs';
import { Fan } from '../fan/fan.js';
import { FanTable } from '../fan/table.js';
import { PacketBatch, PacketList } from '../io/batch.js';
import { native } from '../io/native.js';
import { Poller } from '../io/poll.js';
import { BusyPoll } from './busy-poll.js';
import { LinkSocket } from '../io/linksocket.js';
import { NeighbourTable, warmUpLookups } from '../underlay/neighbours.js';
import { RawIpipSocket } from '../underlay/raw-socket.js';
import { TunQueue } from '../tun/queue.js';
import { GsoFrameSocket } from '../underlay/tx-gso.js';
import { XskSocket } from '../io/xdp.js';
import { Coalescer, partialTcp } from '../tun/coalesce.js';
import { offloadFlags } from '../tun/probe.js';
import { ETH_HLEN, GSO_FRAME_HEADROOM, gsoFrame } from '../underlay/gso-frame.js';
import { Arena, finishChecksum, NO_ROOM, segment, splitTcp } from '../tun/segment.js';
import { Drop } from '../wire/drops.js';
import { decapsulate, egressRoute, encapsulate, OUTER_HEADER_LEN, ROUTE_DST, ROUTE_SRC } from '../wire/ipip.js';
import { i32 } from '../wire/ipv4.js';
import { OFF_DATA_OFFSET, OFF_TCP_CHECKSUM } from '../wire/tcp.js';
import { VNET_HDR_LEN } from '../wire/virtio.js';
import { C_BUSY_POLL_HITS, C_BUSY_POLLS, C_DROPS, C_RX_BATCHES, C_RX_BYTES, C_RX_PACKETS, C_RX_XDP, C_TX_BATCHES, C_TX_BYTES, C_TX_GSO, C_TX_LINK, C_TX_PACKETS, CounterTable } from './counters.js';
import { TRACE_IN, TRACE_OUT, TraceRing } from '../io/trace-ring.js';
import {
  CONTROL_STOP, CONTROL_TRACE, CONTROL_TRACE_FILTER, controlCrashSlot, FD_LINK, FD_RAW, FD_TUN, FD_XSK, FDS_PER_WORKER, type WorkerResult, type WorkerTask,
} from './task.js';

const BATCH = 64;
/**
 * The longest an idle worker sleeps (the addon's cap, WAIT_MAX_MS). The pool ends a wait at once when
 * it sets the worker's stop or crash word (task.waker), so this only bounds how stale the idle-time
 * bookkeeping (AF_XDP frames lost) gets. Short timeouts cost latency: with 20 ms, the idle worker of
 * each host (two per host, one flow) woke 50 times a second, and echoes took 124–131 µs against 69–71
 * with one worker per host; with 250 ms, 71 against 131 before (README, Performance: latency).
 */
const WAIT_MS = 250;
const SOCKET_BUFFER = 8 << 20;

/** A slot that holds the largest IPv4 packet (and a virtio-net header) plus headroom. */
const BIG_SLOT = 65536 + 64;
/** TUN reads per batch with offloads: each may be a 64 KiB super-packet of ~45 segments. */
const TSO_READS = 16;
/**
 * Headroom of a TUN read with a virtio-net header: the header at slot + 38, the IPv4 packet at slot + 48
 * (4-byte aligned, for the checksum's 32-bit reads), room for the outer header in front of it.
 */
const TSO_HEADROOM = 38;
/**
 * Segments one TUN batch can produce before the list or the arena asks for a send in between; at least
 * what one 64 KiB super-packet makes at Linux's smallest MSS (48 bytes: 1366), so none is ever too big.
 */
const SEGMENTS = 2048;
const TX_ARENA = 2 << 20;
const RX_ARENA = 1 << 20;

/** The TUN's MTU (the size coalesced or GRO-joined packets are cut to); 1480 if sysfs does not say. */
function tunMtu(name: string): number {
  try {
    const m = Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim());
    return Number.isInteger(m) && m >= 576 ? m : 1480;
  } catch {
    return 1480;
  }
}

/**
 * The worker's buffers are its own (no other thread touches them), so they are plain ArrayBuffers: V8
 * copies within a SharedArrayBuffer with relaxed-atomic moves, 5× slower (copyWithin of 1428 bytes:
 * 210 ns shared, 41 ns plain, here), and segmenting and coalescing copy every payload byte once.
 * PacketBatch's option is typed SharedArrayBuffer but only needs bytes the addon can address.
 */
const unshared = (b: ArrayBuffer) => b as unknown as SharedArrayBuffer;

/**
 * Whether the IPv4 packet at b[o, o+len) goes to the trace: `filter` (int32; 0 = every packet) is its
 * source or destination, or, for IP-in-IP, its inner packet's.
 */
function traceMatches(b: Uint8Array, o: number, len: number, filter: number): boolean {
  if (filter === 0) return true;
  if (len < 20) return false;
  if (i32(b, o + 12) === filter || i32(b, o + 16) === filter) return true;
  if (b[o + 9] !== 4) return false;
  const i = o + ((b[o] & 0x0f) << 2);
  if (i + 20 > o + len) return false;
  return i32(b, i + 12) === filter || i32(b, i + 16) === filter;
}

export default function runWorker(task: WorkerTask): WorkerResult {
  const fans = new FanTable(task.fans.map((f) => new Fan({ net: f.overlayNet, len: f.overlayLen }, { net: f.underlayNet, len: f.underlayLen }, f.localHost)));
  const control = new Int32Array(task.control);
  const crashSlot = controlCrashSlot(task.index);
  const c = new CounterTable(task.count, task.counters).row(task.index);
  const fds = new Int32Array(task.fds);
  const offload = task.offload === true;
  if (task.cpu !== undefined) native().pinThread(task.cpu);

  const at = FDS_PER_WORKER * task.index;
  const tun = TunQueue.open(task.tun, { multiQueue: true, vnetHdr: offload });
  fds[at + FD_TUN] = tun.fd;
  let sock: RawIpipSocket | undefined;
  let link: LinkSocket | undefined;
  let xsk: XskSocket | undefined;
  try {
    // Device-wide, like IFF_VNET_HDR; every worker asks for the same.
    if (offload) tun.setOffload(offloadFlags());
    sock = RawIpipSocket.open({ rcvbuf: SOCKET_BUFFER, sndbuf: SOCKET_BUFFER });
    if (task.neighbours) {
      link = LinkSocket.open({ sndbuf: SOCKET_BUFFER });
      fds[at + FD_LINK] = link.fd;
    }
    if (task.xsk) {
      xsk = XskSocket.open(task.xsk);
      fds[at + FD_XSK] = xsk.fd;
    }
    fds[at + FD_RAW] = sock.fd; // last: the pool takes TUN and raw socket both open as "started"
    if (task.count > 1) sock.share(task.index, task.count);
    const links = link && task.neighbours ? { sock: link, table: new NeighbourTable(task.neighbours) } : undefined;
    return loop(task, fans, control, crashSlot, c, tun, sock, links, xsk, offload, tunMtu(task.tun));
  } finally {
    for (let k = 0; k < FDS_PER_WORKER; k++) fds[at + k] = -1;
    tun.close();
    sock?.close();
    link?.close();
    xsk?.close();
  }
}

/** The link-layer send path (up --send packet): its socket and the neighbours it may send to. */
interface Links {
  sock: LinkSocket;
  table: NeighbourTable;
}

function loop(
  task: WorkerTask, fans: FanTable, control: Int32Array, crashSlot: number, c: Float64Array, tun: TunQueue, sock: RawIpipSocket,
  links: Links | undefined, xsk: XskSocket | undefined, offload: boolean, mtu: number,
): WorkerResult {
  // TUN → underlay. With offloads: big read slots, then the arena segments are cut into, in one buffer.
  const outSlots = offload ? TSO_READS : BATCH;
  const outSlotSize = offload ? BIG_SLOT : 2048;
  const outRegion = outSlots * outSlotSize;
  const outBuf = new ArrayBuffer(outRegion + (offload ? TX_ARENA : 0));
  const out = new PacketBatch({ slots: outSlots, slotSize: outSlotSize, headroom: offload ? TSO_HEADROOM : 32, buffer: unshared(outBuf) });
  const outBytes = new Uint8Array(outBuf);
  const tx = offload ? new PacketList(outBytes, SEGMENTS) : out.outgoing;
  const txArena = new Arena(outRegion, outBuf.byteLength);
  // Per tx entry, with links: the neighbour's interface (0: through the raw socket) and MAC.
  const txIf = new Int32Array(tx.capacity);
  const txLl = new Int32Array(2 * tx.capacity);
  const hop = new Int32Array(2);
  // TX GSO (src/io/tx-gso.ts): whole super-packet frames, at most one per TUN read slot, each with its
  // interface and the number of segments the kernel will cut it into; this host's MAC per underlay interface.
  const gso = task.gso && links && offload ? new GsoFrameSocket(task.gso.fd) : undefined;
  const gtx = new PacketList(outBytes, outSlots);
  const gtxIf = new Int32Array(outSlots);
  const gtxSegs = new Int32Array(outSlots);
  const gsoIf = Int32Array.from(task.gso?.links ?? [], (l) => l.ifindex);
  const gsoMacHi = Int32Array.from(task.gso?.links ?? [], (l) => l.macHi);
  const gsoMacLo = Int32Array.from(task.gso?.links ?? [], (l) => l.macLo);
  const gsoRoom = new Poller(1);
  if (gso) gsoRoom.add(gso.fd, native().POLLOUT);
  let gsoErrors = 0;
  // up --send gso: only TX GSO's whole frames go by MAC; every other packet through the raw socket.
  const smallByMac = task.smallByMac !== false;

  // Underlay → TUN: 64 KiB slots (kernel-GRO packets), an arena for cutting them when offloads are off.
  const inRegion = BATCH * BIG_SLOT;
  const inBuf = new ArrayBuffer(inRegion + (offload ? 0 : RX_ARENA));
  const inb = new PacketBatch({ slots: BATCH, slotSize: BIG_SLOT, buffer: unshared(inBuf) });
  const inBytes = new Uint8Array(inBuf);
  const wl = new PacketList(inBytes, SEGMENTS);
  const rxArena = new Arena(inRegion, inBuf.byteLength);
  const coalescer = new Coalescer(BATCH);

  const poller = new Poller(4);
  const TUN = poller.add(tun.fd);
  const SOCK = poller.add(sock.fd);
  const XSK = xsk ? poller.add(xsk.fd) : -1;
  // The pool's eventfd for this worker: readable when it wants the worker to look at its control words.
  const WAKE = poller.add(task.waker);
  // Frames the kernel could not put on the AF_XDP ring (XDP_STATISTICS), read when idle and every 1024 batches.
  let xskLost = 0;
  let xskBatches = 0;
  const countXskLost = () => {
    const st = xsk!.stats();
    const lost = st.dropped + st.ringFull;
    if (lost !== xskLost) {
      c[C_DROPS + Drop['rx-xdp-lost']] += lost - xskLost;
      xskLost = lost;
    }
  };
  // Waiting for room: the socket's send buffer, the TUN queue (each its own poll set, POLLOUT).
  const sockRoom = new Poller(1);
  sockRoom.add(sock.fd, native().POLLOUT);
  const tunRoom = new Poller(1);
  tunRoom.add(tun.fd, native().POLLOUT);
  const linkRoom = new Poller(1);
  if (links) linkRoom.add(links.sock.fd, native().POLLOUT);
  const ttl = task.ttl;
  const policy = task.policy;
  let id = (task.index * 0x10000) / task.count;
  let sendErrors = 0;
  let linkErrors = 0;
  let writeErrors = 0;
  let idle = true;
  const busy = new BusyPoll(task.busyPollUs ?? 0);
  const spinUs = busy.spinUs;
  const route = new Int32Array(2);
  const ring = task.trace ? new TraceRing(task.trace) : undefined;
  let tracing = false;
  let filter = 0;

  /**
   * sendmmsg tx entries [from, to) through the link socket (viaLink) or the raw socket, waiting briefly
   * while its send buffer is full; what still does not fit is dropped and counted.
   */
  const sendRun = (from: number, to: number, viaLink: boolean) => {
    const first = from;
    // The send runs at least once, also for an empty run: see the calls right after this function.
    for (let tries = 0; tries < 50; tries++) {
      from = viaLink ? links!.sock.send(tx, txIf, txLl, from, to) : sock.send(tx, from, to);
      if (from >= to) break;
      (viaLink ? linkRoom : sockRoom).wait(2); // send buffer full: wait until it has room (≤ 2 ms a try)
    }
    if (from < to) {
      c[C_DROPS + Drop['tx-send-error']] += to - from;
      c[C_TX_PACKETS] -= to - from;
    }
    if (viaLink) c[C_TX_LINK] += from - first;
  };
  // Both sends a few times, with nothing to send, before any traffic, so that both have type feedback
  // when V8 optimizes flushTx (V8 starts recording a function's feedback after its first 8 calls). With
  // --send packet a flood sends everything by MAC; the raw branch then first runs for the once-a-second
  // neighbour probe, deoptimizes flushTx, and sparse traffic is too slow to get it optimized again
  // (--trace-deopt: 8 s of echoes 10 ms apart ran it unoptimized, and each echo took longer).
  for (let i = 0; i < 16; i++) {
    sendRun(0, 0, false);
    if (links) sendRun(0, 0, true);
  }
  // The same for the neighbour lookups: the copy of the kernel's neighbours is empty for the first
  // second of traffic, so a first flood may never see a hit.
  if (links) warmUpLookups();

  /** Sends what `tx` holds (each entry through the socket it was routed to); empties it. */
  const flushTx = () => {
    if (tracing) {
      for (let k = 0; k < tx.count; k++) {
        if (traceMatches(outBytes, tx.offsets[k], tx.lengths[k], filter)) ring!.append(outBytes, tx.offsets[k], tx.lengths[k], TRACE_OUT, 0);
      }
    }
    if (links === undefined) {
      sendRun(0, tx.count, false);
    } else {
      // Runs of consecutive entries that take the same socket, in order. Every round reads txIf and
      // compares, also the last (the result then unused): a read or compare first run by a batch of two
      // packets after a flood of single ones (TX GSO takes the bulk elsewhere) deoptimized flushTx
      // (deopt.test.ts).
      const n = tx.count;
      let from = 0;
      let viaLink = txIf[0] !== 0;
      for (let k = 1; k <= n; k++) {
        const next = txIf[k < n ? k : 0] !== 0;
        const change = next !== viaLink;
        if (k === n || change) {
          sendRun(from, k, viaLink);
          from = k;
          viaLink = next;
        }
      }
      const lerrs = links.sock.errors.total;
      if (lerrs !== linkErrors) {
        c[C_DROPS + Drop['tx-send-error']] += lerrs - linkErrors;
        c[C_TX_PACKETS] -= lerrs - linkErrors;
        c[C_TX_LINK] -= lerrs - linkErrors;
        linkErrors = lerrs;
      }
    }
    const errs = sock.errors.total;
    if (errs !== sendErrors) {
      c[C_DROPS + Drop['tx-send-error']] += errs - sendErrors;
      c[C_TX_PACKETS] -= errs - sendErrors;
      sendErrors = errs;
    }
    tx.count = 0;
  };

  /**
   * Sends the whole frames `gtx` holds through the TX GSO socket (waiting briefly while its send buffer is
   * full); empties it. A frame that did not go counts as one dropped packet (tx-send-error), and its
   * segments come off the tx counts: exactly for frames the send buffer never took; for frames the kernel
   * refused (which ones the batch call does not say), this flush's mean segments per frame.
   */
  const flushGso = () => {
    const n = gtx.count;
    if (tracing) {
      // The outer packet, as a capture on a host with TSO shows it: one super-packet.
      const skip = VNET_HDR_LEN + ETH_HLEN;
      for (let k = 0; k < n; k++) {
        if (traceMatches(outBytes, gtx.offsets[k] + skip, gtx.lengths[k] - skip, filter)) ring!.append(outBytes, gtx.offsets[k] + skip, gtx.lengths[k] - skip, TRACE_OUT, 0);
      }
    }
    let from = 0;
    // Runs at least once, also empty: see the warm-up below.
    for (let tries = 0; tries < 50; tries++) {
      from = gso!.send(gtx, gtxIf, from, n);
      if (from >= n) break;
      gsoRoom.wait(2);
    }
    const refused = gso!.errors.total - gsoErrors;
    gsoErrors = gso!.errors.total;
    if (from < n || refused > 0) {
      let unsent = 0;
      let all = 0;
      for (let k = 0; k < n; k++) {
        all += gtxSegs[k];
        if (k >= from) unsent += gtxSegs[k];
      }
      const segs = unsent + (refused > 0 ? Math.round((refused * all) / n) : 0);
      c[C_DROPS + Drop['tx-send-error']] += n - from + refused;
      c[C_TX_PACKETS] -= segs;
      c[C_TX_LINK] -= segs;
    }
    gtx.count = 0;
  };
  if (gso) for (let i = 0; i < 16; i++) flushGso();

  /**
   * Writes what `wl` holds to the TUN (waiting briefly if it pushes back); empties it. False if the device
   * is gone. RX packets count segments as they arrived; a refused super-packet takes one off that count.
   */
  let deviceError = '';
  const flushWrite = (): boolean => {
    let from = 0;
    for (let tries = 0; from < wl.count && tries < 50; tries++) {
      try {
        from = tun.write(wl, from);
      } catch (e) {
        deviceError = (e as Error).message;
        return false;
      }
      if (from < wl.count) tunRoom.wait(2);
    }
    if (from < wl.count) {
      c[C_DROPS + Drop['rx-write-error']] += wl.count - from;
      c[C_RX_PACKETS] -= wl.count - from;
    }
    const errs = tun.errors.total;
    if (errs !== writeErrors) {
      c[C_DROPS + Drop['rx-write-error']] += errs - writeErrors;
      c[C_RX_PACKETS] -= errs - writeErrors;
      writeErrors = errs;
    }
    wl.count = 0;
    return true;
  };

  /**
   * Encapsulates tx entries [first, tx.count) for dst, in place, each to be sent through the link
   * socket to interface ifindex and MAC hop[0..1], or through the raw socket when ifindex is 0.
   */
  const encapsulateFrom = (b: Uint8Array, first: number, src: number, dst: number, ifindex: number) => {
    const hi = hop[0];
    const lo = hop[1];
    for (let k = first; k < tx.count; k++) {
      const len = tx.lengths[k];
      tx.offsets[k] = encapsulate(b, tx.offsets[k], len, src, dst, ttl, id);
      tx.lengths[k] = len + OUTER_HEADER_LEN;
      tx.addresses[k] = dst;
      txIf[k] = ifindex;
      txLl[2 * k] = hi;
      txLl[2 * k + 1] = lo;
      id = (id + 1) & 0xffff;
      c[C_TX_BYTES] += len;
    }
    c[C_TX_PACKETS] += tx.count - first;
  };

  /**
   * Checks, decapsulates and writes to the TUN the n packets `inb` received (from the AF_XDP ring or the
   * raw socket). False if the TUN device is gone (deviceError says why).
   */
  const ingest = (n: number): boolean => {
    idle = false;
    c[C_RX_BATCHES]++;
    const bytes = inBytes;
    const rx = inb.received;
    wl.count = 0;
    rxArena.reset();
    for (let i = 0; i < n; i++) {
      const off = rx.offsets[i];
      const len = rx.lengths[i];
      if (len > inb.packetCapacity) {
        c[C_DROPS + Drop['rx-truncated-inner']]++;
        if (tracing && traceMatches(bytes, off, inb.packetCapacity, filter)) ring!.append(bytes, off, inb.packetCapacity, TRACE_IN, Drop['rx-truncated-inner']);
        continue;
      }
      // Copied as it arrived (decapsulate rewrites the inner ECN field), published with the verdict.
      const traced = tracing && traceMatches(bytes, off, len, filter) && ring!.begin(bytes, off, len, TRACE_IN);
      const inner = decapsulate(bytes, off, len, fans, policy);
      if (traced) ring!.commit(inner < 0 ? -inner : 0);
      if (inner < 0) {
        c[C_DROPS - inner]++;
        continue;
      }
      const ilen = len - (inner - off);
      c[C_RX_PACKETS]++;
      c[C_RX_BYTES] += ilen;
      if (offload) {
        wl.push(inner, ilen);
        continue;
      }
      // Without offloads the TUN takes finished packets no longer than its MTU: finish a partial
      // checksum (kernel GRO, or a CHECKSUM_PARTIAL kernel peer), cut what GRO joined.
      if (partialTcp(bytes, inner, ilen, mtu) === 1) {
        const ihl = (bytes[inner] & 0x0f) << 2;
        if (ilen <= mtu) {
          finishChecksum(bytes, inner, ilen, ihl, OFF_TCP_CHECKSUM);
        } else {
          const hl = ihl + ((bytes[inner + ihl + OFF_DATA_OFFSET] >>> 4) << 2);
          let r = splitTcp(bytes, inner, ilen, mtu - hl, wl, rxArena, 0);
          if (r === NO_ROOM) {
            if (!flushWrite()) return false;
            rxArena.reset();
            r = splitTcp(bytes, inner, ilen, mtu - hl, wl, rxArena, 0);
          }
          if (r > 0) continue;
          // Headers too long to cut at this MTU: write it as it is; the kernel answers for it.
        }
      }
      if (wl.count >= wl.capacity && !flushWrite()) return false;
      wl.push(inner, ilen);
    }
    if (offload) coalescer.run(bytes, wl, BIG_SLOT, mtu);
    return flushWrite();
  };

  while (Atomics.load(control, CONTROL_STOP) === 0) {
    if (Atomics.load(control, crashSlot) !== 0) {
      Atomics.store(control, crashSlot, 0);
      throw new Error(`worker ${task.index}: crash requested (fault injection)`);
    }
    // Under load both descriptors stay readable: try them directly and only poll (sleep) when the last
    // round found nothing, saving a poll() per round.
    let tunReady = true;
    let sockReady = true;
    let xskReady = xsk !== undefined;
    if (idle) {
      // Branch-free on purpose: a property access or counter this loop has never run (the first busy poll
      // after a flood) deoptimizes the whole loop, and sparse traffic is too slow to reoptimize it.
      const spin = busy.spins ? spinUs : 0;
      const ready = poller.wait(WAIT_MS, spin);
      busy.waited(poller.times);
      c[C_BUSY_POLLS] += spin > 0 ? 1 : 0;
      c[C_BUSY_POLL_HITS] += poller.caught() ? 1 : 0;
      if (ready === 0) {
        if (xsk) countXskLost();
        continue;
      }
      // Woken by the pool: the loop's head reads the control words. (Only ever on stop or crash.)
      if (poller.readable(WAKE)) native().eventfdRead(task.waker);
      if (poller.failed(TUN)) return { index: task.index, reason: 'device-gone', detail: `TUN ${task.tun} reported an error (deleted?)` };
      tunReady = poller.readable(TUN);
      sockReady = poller.readable(SOCK) || poller.failed(SOCK);
      xskReady = xsk !== undefined && poller.readable(XSK);
    } else {
      busy.worked(); // the last round found packets
    }
    idle = true;
    if (ring !== undefined) {
      tracing = Atomics.load(control, CONTROL_TRACE) !== 0;
      if (tracing) filter = Atomics.load(control, CONTROL_TRACE_FILTER);
    }

    // Egress: container → TUN → IP-in-IP → underlay.
    if (tunReady) {
      let n: number;
      try {
        n = tun.read(out);
      } catch (e) {
        return { index: task.index, reason: 'device-gone', detail: (e as Error).message };
      }
      if (n > 0) {
        idle = false;
        c[C_TX_BATCHES]++;
        const bytes = outBytes;
        const rx = out.received;
        tx.count = 0;
        txArena.reset();
        for (let i = 0; i < n; i++) {
          const off = rx.offsets[i];
          const len = rx.lengths[i];
          if (out.truncated(i) || (offload && len < VNET_HDR_LEN)) {
            c[C_DROPS + Drop['tx-malformed']]++;
            const at = offload && len >= VNET_HDR_LEN ? VNET_HDR_LEN : 0; // the packet, not its virtio-net header
            if (tracing && traceMatches(bytes, off + at, len - at, filter)) ring!.append(bytes, off + at, len - at, TRACE_OUT, Drop['tx-malformed']);
            continue;
          }
          const ip = offload ? off + VNET_HDR_LEN : off;
          const ipLen = offload ? len - VNET_HDR_LEN : len;
          const drop = egressRoute(bytes, ip, ipLen, fans, route);
          if (drop !== 0) {
            c[C_DROPS + drop]++;
            if (tracing && traceMatches(bytes, ip, ipLen, filter)) ring!.append(bytes, ip, ipLen, TRACE_OUT, drop);
            continue;
          }
          const src = route[ROUTE_SRC];
          const dst = route[ROUTE_DST];
          const ifindex = links === undefined ? 0 : links.table.lookup(dst, hop, 0);
          if (!offload) {
            if (tx.count >= tx.capacity) flushTx();
            tx.push(ip, ipLen);
            encapsulateFrom(bytes, tx.count - 1, src, dst, smallByMac ? ifindex : 0);
            continue;
          }
          if (gso !== undefined && ifindex !== 0) {
            // Whole, for the kernel to cut (TX GSO), when it is a TCP super-packet and this interface has the program.
            let m = 0;
            while (m < gsoIf.length && gsoIf[m] !== ifindex) m++;
            const n = m < gsoIf.length ? gsoFrame(bytes, off, len, hop[0], hop[1], gsoMacHi[m], gsoMacLo[m], src, dst, ttl, id) : 0;
            if (n > 0) {
              if (tx.count > 0) flushTx(); // keep the TUN's order
              gtx.push(off - GSO_FRAME_HEADROOM, len + GSO_FRAME_HEADROOM);
              gtxIf[gtx.count - 1] = ifindex;
              gtxSegs[gtx.count - 1] = n;
              id = (id + n) & 0xffff;
              // Inner bytes as they will leave: the headers once per segment.
              const ihl = (bytes[ip] & 0x0f) << 2;
              const hl = ihl + ((bytes[ip + ihl + OFF_DATA_OFFSET] >>> 4) << 2);
              c[C_TX_BYTES] += ipLen + (n - 1) * hl;
              c[C_TX_PACKETS] += n;
              c[C_TX_LINK] += n;
              c[C_TX_GSO]++;
              if (gtx.count >= gtx.capacity) flushGso();
              continue;
            }
          }
          if (gtx.count > 0) flushGso(); // keep the TUN's order
          const smallIf = smallByMac ? ifindex : 0;
          let r = segment(bytes, off, len, tx, txArena, OUTER_HEADER_LEN);
          if (r === NO_ROOM) {
            // The list or the arena is full: send what they hold and cut this packet into empty ones.
            flushTx();
            txArena.reset();
            r = segment(bytes, off, len, tx, txArena, OUTER_HEADER_LEN);
          }
          if (r < 0) {
            c[C_DROPS + Drop['tx-malformed']]++;
            if (tracing && traceMatches(bytes, ip, ipLen, filter)) ring!.append(bytes, ip, ipLen, TRACE_OUT, Drop['tx-malformed']);
            continue;
          }
          encapsulateFrom(bytes, tx.count - r, src, dst, smallIf);
        }
        flushTx();
        if (gtx.count > 0) flushGso();
      }
    }

    // Ingress: underlay → checks → TUN → bridge → container. The AF_XDP ring first, then the raw socket.
    if (xskReady) {
      const n = xsk!.receive(inb);
      if (n > 0) {
        c[C_RX_XDP] += n;
        if ((++xskBatches & 1023) === 0) countXskLost();
        if (!ingest(n)) return { index: task.index, reason: 'device-gone', detail: deviceError };
      }
    }
    if (sockReady) {
      const n = sock.receive(inb);
      if (n > 0 && !ingest(n)) return { index: task.index, reason: 'device-gone', detail: deviceError };
    }
  }
  return { index: task.index, reason: 'stopped' };
}
