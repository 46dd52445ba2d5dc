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
   * super-packets and coalesce received segments (src/tun/device.ts). Decided once by the daemon
   * (src/tun/probe.ts), the same for every worker: the virtio-net header is a device-wide setting.
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
  /** This worker's TraceRing buffer (src/io/trace-ring.ts); absent when tracing is disabled (up --no-trace). */
  trace?: SharedArrayBuffer;
  /**
   * TX GSO (up --send gso, the default, where the kernel takes it; src/underlay/gso.ts): the daemon's
   * AF_PACKET socket for whole super-packet frames (shared by every worker, owned by the pool), the
   * underlay interfaces its TC program is attached to with this host's MAC on each, and the pool's copy of
   * the kernel's neighbours. Absent: every packet through the raw socket (src/underlay/raw.ts).
   */
  gso?: { fd: number; links: { ifindex: number; macHi: number; macLo: number }[]; neighbours: SharedArrayBuffer };
  /**
   * The Fan's VXLAN type (up --type vxlan): the worker attaches to a TAP, not a TUN, and sends and
   * receives VXLAN on its own UDP socket (src/underlay/vxlan.ts). Absent: IP-in-IP.
   */
  vxlan?: { port: number; vni: number };
  /** CounterTable buffer. */
  counters: SharedArrayBuffer;
  /**
   * Int32Array of FDS_PER_WORKER fds per worker (TUN queue, raw socket, or -1), so the main thread can
   * close them if the worker dies.
   */
  fds: SharedArrayBuffer;
}

export interface WorkerResult {
  index: number;
  reason: 'stopped' | 'device-gone';
  detail?: string;
}

/** Descriptors a worker holds, in WorkerTask.fds: [TUN queue, raw socket] (-1: none). */
export const FDS_PER_WORKER = 2;
export const FD_TUN = 0;
export const FD_RAW = 1;

export const CONTROL_STOP = 0;
export const CONTROL_TRACE = 1;
export const CONTROL_TRACE_FILTER = 2;
export const controlCrashSlot = (index: number) => 3 + index;
export const controlSlots = (workers: number) => 3 + workers;
