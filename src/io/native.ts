/**
 * The native addon (native/*.c, built by `npm install` into build/Release/userfan.node): typed
 * declarations and the loader. The addon only makes syscalls; everything about packets is in TypeScript.
 *
 * It is context-aware (Node-API, NAPI_MODULE_INIT), so every worker thread can load it.
 * Errors are thrown as `Error` with message `"<op> <object>: <ERRNO>"` (e.g. `TUNSETIFF fan0: EPERM`),
 * `code` = the errno name, `errno` = the (positive) errno number, `syscall` = the operation.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface TunOpenOptions {
  /** IFF_MULTI_QUEUE: every open of the same name attaches one more queue (one fd per worker). */
  multiQueue?: boolean;
  /** IFF_VNET_HDR: every read and write carries a 10-byte virtio_net_hdr first (for offloads). */
  vnetHdr?: boolean;
  /** TUNSETPERSIST: the device outlives its queues. */
  persist?: boolean;
  /** IFF_TUN_EXCL: fail with EBUSY instead of attaching to a device that already exists. */
  exclusive?: boolean;
  /** IFF_TAP instead of IFF_TUN: Ethernet frames (the VXLAN type's device). */
  tap?: boolean;
}

export interface RawOpenOptions {
  /** 4 (IPPROTO_IPIP, default): sends and receives IP-in-IP. 255 (IPPROTO_RAW): send-only. */
  protocol?: number;
  /** SO_RCVBUFFORCE, bytes (the kernel doubles it). */
  rcvbuf?: number;
  /** SO_SNDBUFFORCE, bytes (the kernel doubles it). */
  sndbuf?: number;
  /** SO_BINDTODEVICE. */
  device?: string;
}

/** The addon's exports. Descriptors are plain ints owned by the caller. */
export interface NativeAddon {
  tunOpen(name: string, options?: TunOpenOptions): { fd: number; name: string };
  tunSetPersist(fd: number, on: boolean): void;
  tunSetOffload(fd: number, flags: number): void;

  /** Interface index in the calling thread's namespace; 0 when there is no such interface. */
  ifIndex(name: string): number;
  ifSetUp(name: string, up: boolean): void;
  ifSetMtu(name: string, mtu: number): void;
  ifSetTxQueueLen(name: string, length: number): void;

  rawOpen(options?: RawOpenOptions): number;
  /**
   * A UDP socket on 0.0.0.0:port (default 8472), SO_REUSEPORT, outer DF clear; EADDRINUSE when a socket without
   * SO_REUSEPORT holds it. `exclusive`: without SO_REUSEPORT, so that any socket on the port refuses it.
   */
  udpOpen(options?: { port?: number; rcvbuf?: number; sndbuf?: number; exclusive?: boolean }): number;
  /** sendmmsg of datagrams [from, to) on a UDP socket, datagram i to addresses[i]:port; returns the next index (EAGAIN: < to). */
  sendUdpBatch(
    fd: number, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, addresses: Uint32Array, port: number, from: number, to: number,
    errs?: Uint32Array,
  ): number;
  /**
   * sendmmsg of messages [from, to) on a UDP socket, message i to addresses[i]:port; segs[i] > 0 sends it as
   * datagrams of that size (UDP_SEGMENT, the last may be shorter). Returns the next index (EAGAIN: < to).
   */
  sendUdpGsoBatch(
    fd: number, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, addresses: Uint32Array, segs: Uint32Array, port: number, from: number,
    to: number, errs?: Uint32Array,
  ): number;
  /** UDP_GRO on a UDP socket: datagrams of one flow may arrive glued (recvGroBatch says their size). */
  udpSetGro(fd: number, on: boolean): void;
  /** recvBatch, and segs[i] = the size of the datagrams glued into message i (UDP_GRO), 0 for one datagram. */
  recvGroBatch(
    fd: number, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, cap: number, max: number, srcs: Uint32Array, segs: Uint32Array,
    errs?: Uint32Array | null,
  ): number;
  socketBuffers(fd: number): { rcvbuf: number; sndbuf: number };
  /** Classic BPF program as pairs [code | jt << 16 | jf << 24, k]. */
  attachFilter(fd: number, program: Uint32Array): void;
  detachFilter(fd: number): void;
  /** Discards up to max queued packets; returns how many. */
  drain(fd: number, max: number): number;

  /** read() until EAGAIN or max: packet i at buf[offs[i]] (≤ cap bytes; cut silently), lens[i] its length. */
  readBatch(fd: number, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, cap: number, max: number): number;
  /** write() packets from..to-1, refusals counted in errs; returns the first index not handled. */
  writeBatch(
    fd: number, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, from: number, to: number,
    errs?: Uint32Array | null,
  ): number;
  /** recvmmsg until EAGAIN or max: lens[i] > cap means truncated; srcs[i] host-order IPv4. */
  recvBatch(
    fd: number, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, cap: number, max: number,
    srcs: Uint32Array, errs?: Uint32Array | null,
  ): number;
  /** sendmmsg packets from..to-1 to dsts[i]; refusals counted; returns the first index not handled. */
  sendBatch(
    fd: number, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, dsts: Uint32Array, from: number,
    to: number, errs?: Uint32Array | null,
  ): number;
  /**
   * AF_PACKET send-only socket: SOCK_DGRAM, or with vnet SOCK_RAW with PACKET_VNET_HDR, the one
   * sendFrameBatch sends on (src/underlay/tx-gso.ts).
   */
  linkOpen(options?: { sndbuf?: number; vnet?: boolean }): number;
  /**
   * sendmmsg whole frames from..to-1 (virtio-net header + Ethernet frame, on a linkOpen({vnet: true})
   * socket), frame i out of interface ifindex[i]; refusals counted; returns the first index not handled.
   */
  sendFrameBatch(
    fd: number, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, ifindex: Int32Array, from: number, to: number,
    errs?: Uint32Array | null,
  ): number;
  /** SO_COOKIE: the number bpf_get_socket_cookie() gives for the socket's packets. */
  socketCookie(fd: number): number;

  /** out[i] = folded one's-complement sum of buf[offs[i], offs[i] + lens[i]) for i < n (src/io/sum-batch.ts; wire/checksum.ts's sum16). */
  sum16Batch(buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, n: number, out: Uint32Array): void;

  /**
   * poll() the first n fds (events null: POLLIN) for at most timeoutMs, capped at WAIT_MAX_MS (also
   * for negative values); revents[i] filled; returns how many are ready (0: timeout or signal).
   * spinUs > 0 (at most WAIT_MAX_SPIN_US): first look again and again for that long, with
   * sched_yield() between looks, before sleeping (busy polling); it stops looking early when a yield
   * ran another thread for a while. Plus WAIT_CAUGHT when a look found them ready. times[0], times[1]:
   * when the call started and ended, µs on CLOCK_MONOTONIC.
   */
  wait(fds: Int32Array, events: Int32Array | null, n: number, timeoutMs: number, revents: Int32Array, spinUs?: number, times?: Float64Array): number;
  eventfdOpen(): number;
  eventfdWrite(fd: number): void;
  eventfdRead(fd: number): number;

  /**
   * Loads a TC program for tcx egress (src/underlay/tx-gso.ts) from struct bpf_insn bytes; a refusal's
   * message carries the verifier's last lines.
   */
  bpfLoadTc(insns: Uint8Array, license: string): number;
  /** Attaches a TC program to the interface's egress (tcx, Linux 6.6) through a BPF link (fd): detached when the fd closes. */
  tcxLink(prog: number, ifindex: number): number;
  /** What the program returns for one frame, e.g. a TC_ACT_* (BPF_PROG_TEST_RUN; for tests). */
  bpfTestRun(prog: number, frame: Uint8Array): number;

  /** setns(fd, CLONE_NEWNET) for the calling thread only. */
  setNetns(fd: number): void;
  /** sched_setaffinity for the calling thread only: it runs on that one CPU from now on. */
  pinThread(cpu: number): void;
  close(fd: number): void;

  readonly POLLIN: number;
  readonly POLLOUT: number;
  readonly POLLERR: number;
  readonly POLLHUP: number;
  readonly POLLNVAL: number;
  readonly TUN_F_CSUM: number;
  readonly TUN_F_TSO4: number;
  readonly TUN_F_TSO6: number;
  readonly TUN_F_TSO_ECN: number;
  readonly TUN_F_UFO: number;
  readonly ERR_TOTAL: number;
  readonly ERR_LAST: number;
  readonly ERR_MSGSIZE: number;
  readonly ERR_UNREACH: number;
  readonly ERR_NOBUFS: number;
  readonly ERR_INVAL: number;
  readonly ERR_PERM: number;
  readonly ERR_IO: number;
  readonly ERR_OTHER: number;
  readonly ERR_SLOTS: number;
  readonly WAIT_MAX: number;
  readonly WAIT_MAX_MS: number;
  readonly WAIT_MAX_SPIN_US: number;
  /** Added to wait()'s count when a busy poll found the descriptors ready without sleeping. */
  readonly WAIT_CAUGHT: number;
}

/** An error thrown by the addon. */
export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as NativeError).syscall === 'string' && typeof (e as NativeError).errno === 'number';
}

/**
 * Rethrows a native error with a better object name: `read fd 12: EBADFD` → `read fan0: EBADFD`.
 * Anything else is rethrown unchanged.
 */
export function rethrowAs(e: unknown, object: string): never {
  if (isNativeError(e)) e.message = `${e.syscall} ${object}: ${e.code}`;
  throw e;
}

/** Closes a descriptor the caller owns, naming `object` in the error (the I/O classes' idempotent close()). */
export function closeFd(fd: number, object: string): void {
  try {
    native().close(fd);
  } catch (e) {
    rethrowAs(e, object);
  }
}

const ADDON_PATH = join('build', 'Release', 'userfan.node');

/** Finds build/Release/userfan.node above this module (works from src/io and from dist/src/io). */
export function addonPath(): string {
  const override = process.env.USERFAN_ADDON;
  if (override) return override;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, ADDON_PATH);
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error(`userfan: native addon ${ADDON_PATH} not found above ${fileURLToPath(import.meta.url)}; run npm install`);
}

let loaded: NativeAddon | undefined;

/** The addon, loaded on first use (once per thread: every worker has its own module instance). */
export function native(): NativeAddon {
  // A copy: the addon's own exports object is in V8's dictionary mode (too many properties defined one by
  // one), so every read of a function or constant is a hash lookup; the copy has fast properties, a load
  // at a fixed offset. It matters after a sleep, when every line a lookup touches is a cache miss.
  if (!loaded) loaded = { ...(createRequire(import.meta.url)(addonPath()) as NativeAddon) };
  return loaded;
}
