/** What the main thread hands a worker: plain data and shared buffers, structured-cloneable. */
export interface FanSpecData {
  overlayNet: number;
  overlayLen: number;
  underlayNet: number;
  underlayLen: number;
  localHost: number;
}

export interface WorkerTask {
  /** Worker slot, 0..count-1: its TUN queue, its share of received packets, its counter row. */
  index: number;
  count: number;
  tun: string;
  fans: FanSpecData[];
  /** The CPU this worker pins its thread to (up --cpus); absent: the scheduler places it. */
  cpu?: number;
  /** Outer TTL; 0 inherits the inner TTL. */
  ttl: number;
  /** Decapsulation policy bits (wire/ipip.ts). */
  policy: number;
  /**
   * Busy polling (up --busy-poll): after handling sparse traffic, look again for this many µs before
   * sleeping (src/dataplane/busy-poll.ts); 0 or absent: sleep at once.
   */
  busyPollUs?: number;
  /**
   * TUN offloads: open the queue with IFF_VNET_HDR and TUNSETOFFLOAD(CSUM | TSO4 | TSO_ECN), cut
   * super-packets and coalesce received segments (src/offload/). Decided once by the daemon
   * (src/offload/probe.ts), the same for every worker: the virtio-net header is a device-wide setting.
   */
  offload?: boolean;
  /**
   * Int32Array: [0] = stop all workers; [1] = a trace is attached; [2] = its address filter (int32, 0 =
   * every packet); [3 + index] = crash this worker (fault injection for tests).
   */
  control: SharedArrayBuffer;
  /**
   * This worker's wake-up eventfd (a Waker the pool owns): written after the pool sets this worker's
   * stop or crash word, so that an idle worker, which sleeps up to WAIT_MAX_MS, sees it at once.
   */
  waker: number;
  /** This worker's TraceRing buffer (src/debug/trace-ring.ts); absent when tracing is disabled (up --no-trace). */
  trace?: SharedArrayBuffer;
  /**
   * The NeighbourTable buffer (src/io/neighbours.ts) when packets go out through a link-layer socket
   * to known underlay neighbours (up --send packet); absent: everything through the raw IP socket.
   */
  neighbours?: SharedArrayBuffer;
  /**
   * TX GSO (src/io/tx-gso.ts): the daemon's AF_PACKET socket for whole super-packet frames (shared by
   * every worker, owned by the pool) and the underlay interfaces its TC program is attached to, with this
   * host's MAC on each. Only with `neighbours` and `offload`; absent: super-packets are cut in user space.
   */
  gso?: { fd: number; links: { ifindex: number; macHi: number; macLo: number }[] };
  /**
   * With `neighbours`: false sends only TX GSO's whole frames by MAC and every other packet through the
   * raw socket (up --send gso); absent or true: every packet to a known neighbour by MAC (up --send packet).
   */
  smallByMac?: boolean;
  /**
   * This worker's AF_XDP socket (up --recv xdp): the underlay interface, the RX queue it serves, and the
   * XdpRedirect's socket map it enters itself in. Absent: everything arrives through the raw socket.
   */
  xsk?: { ifindex: number; queue: number; map: number };
  /** CounterTable buffer. */
  counters: SharedArrayBuffer;
  /**
   * Int32Array of FDS_PER_WORKER fds per worker (TUN queue, raw socket, link socket, AF_XDP socket or -1), so the main
   * thread can close them if the worker dies.
   */
  fds: SharedArrayBuffer;
}

export interface WorkerResult {
  index: number;
  reason: 'stopped' | 'device-gone';
  detail?: string;
}

/**
 * Descriptors a worker holds, in WorkerTask.fds: [TUN queue, raw socket, link socket, AF_XDP socket]
 * (-1: none).
 */
export const FDS_PER_WORKER = 4;
export const FD_TUN = 0;
export const FD_RAW = 1;
export const FD_LINK = 2;
export const FD_XSK = 3;

export const CONTROL_STOP = 0;
export const CONTROL_TRACE = 1;
export const CONTROL_TRACE_FILTER = 2;
export const controlCrashSlot = (index: number) => 3 + index;
export const controlSlots = (workers: number) => 3 + workers;
