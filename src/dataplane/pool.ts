/**
 * The worker pool (piscina): N long-lived data-plane tasks, one per thread, each owning a TUN queue and
 * a raw socket. The main thread only starts, watches and stops them: no packet passes through it.
 *
 * A worker that dies is replaced at once (piscina keeps minThreads alive; the task is submitted again)
 * and the event logged; the descriptors it left open are closed here so its TUN queue does not swallow
 * the flows the kernel hashes to it.
 *
 * With TX GSO (up --send gso, the default, and TUN offloads) it opens, before the workers start, one
 * AF_PACKET socket for whole super-packet frames and a TC program on each underlay interface
 * (src/underlay/tx-gso.ts), and keeps the workers' copy of the kernel's ARP table fresh: once a second,
 * and as soon as a lookup misses (src/underlay/neighbours.ts), at most once per NEIGHBOUR_MISS_CHECK_MS.
 * If the kernel refuses the program, the workers cut super-packets themselves and `show` says why.
 */
import { Piscina } from 'piscina';
import type { Fan } from '../fan/fan.js';
import { native } from '../io/native.js';
import { kernelGcThresh3, kernelTableFulls, MAX_NEIGHBOURS, NeighbourTable, readArpTable, type UnderlayLink } from '../underlay/neighbours.js';
import { Waker } from '../io/poll.js';
import { GsoSender } from '../underlay/tx-gso.js';
import { CounterTable, C_RESTARTS } from '../io/counters.js';
import { TraceRing, type TraceRecord } from '../io/trace-ring.js';
import {
  CONTROL_STOP, CONTROL_TRACE, CONTROL_TRACE_FILTER, controlCrashSlot, controlSlots, FD_RAW, FD_TUN, FDS_PER_WORKER, type WorkerResult, type WorkerTask,
} from './task.js';

export type LogFn = (event: string, fields?: Record<string, unknown>) => void;

export interface DataPlaneOptions {
  tun: string;
  fans: Fan[];
  workers: number;
  ttl: number;
  policy: number;
  /** Worker i runs on cpus[i mod n] (up --cpus); absent or empty: wherever the scheduler puts it. */
  cpus?: readonly number[];
  /** Busy polling in every worker, µs (up --busy-poll, src/dataplane/busy-poll.ts); absent or 0: off. */
  busyPollUs?: number;
  /** TUN offloads in every worker (decided by src/tun/probe.ts). */
  offload?: boolean;
  /**
   * TX GSO (up --send gso, the default): the fans' underlay interfaces and networks, for the TC program
   * and the neighbour copy. Absent (up --send raw): every packet through the raw IP socket.
   */
  links?: UnderlayLink[];
  /** The VXLAN type's port and VNI (src/underlay/vxlan.ts); absent: IP-in-IP. */
  vxlan?: { port: number; vni: number };
  /** The neighbour refresh, ms (default NEIGHBOUR_REFRESH_MS; tests lengthen it to see the copy after a miss alone). */
  neighbourRefreshMs?: number;
  /** false: no trace can attach, and the workers skip even the per-batch check for one (up --no-trace). */
  trace?: boolean;
  log: LogFn;
  /** Called once when the data plane cannot go on (the TUN device vanished). */
  onFatal: (why: string) => void;
}

const FD_STARTING = -2;
/** How often the neighbour copy is refreshed and each neighbour gets a packet through the kernel. */
export const NEIGHBOUR_REFRESH_MS = 1000;
/**
 * The least time between two copies of the kernel's table after lookups missed. The first miss wakes the
 * main thread, which copies at once (a new host is resolved within milliseconds of its first packet
 * through the kernel); while packets go to a host the table cannot have (behind a gateway), that is a
 * read of /proc/net/arp this often, and none while nothing misses.
 */
export const NEIGHBOUR_MISS_CHECK_MS = 50;
/** How often the kernel's count of neighbours it could not create (table full) is read, and how often at most that is logged. */
export const NEIGHBOUR_OVERFLOW_CHECK_MS = 5000;
const NEIGHBOUR_OVERFLOW_LOG_MS = 60_000;

/** Each worker's V8 young generation, in MiB (V8's default grows to 16 MiB of semi-spaces per isolate). */
export const WORKER_YOUNG_GENERATION_MB = 1;

export class DataPlane {
  readonly counters: CounterTable;
  private readonly control: Int32Array;
  private readonly fds: Int32Array;
  /** One trace ring per worker slot; a replaced worker takes over its slot's ring. */
  private readonly rings: TraceRing[];
  private readonly pool: Piscina;
  private stopping = false;
  private running: Promise<unknown>[] = [];
  private started = false;
  private startError?: Error;
  /** The workers' copy of the kernel's neighbours (TX GSO). */
  readonly neighbours?: NeighbourTable;
  private neighbourTimer?: NodeJS.Timeout;
  private missTimer?: NodeJS.Timeout;
  private overflowTimer?: NodeJS.Timeout;
  /**
   * Neighbours the kernel could not create since this daemon started because its table was full (all
   * namespaces of the machine together); undefined where the kernel's counter cannot be read.
   */
  kernelTableFulls?: number;
  private neighbourError = '';
  private truncationLogged = false;
  /** The kernel had more usable neighbours than the table holds at the last copy. */
  private full = false;
  /** TX GSO's socket and programs, from start() to stop(); and what `show` says of it. */
  private gso?: GsoSender;
  private gsoWhy = '';
  /** One per worker slot: ends that worker's wait when the pool sets its stop or crash word. */
  private readonly wakers: Waker[];

  constructor(private readonly opts: DataPlaneOptions) {
    const n = opts.workers;
    this.counters = new CounterTable(n);
    this.control = new Int32Array(new SharedArrayBuffer(4 * controlSlots(n)));
    this.rings = opts.trace === false ? [] : [...Array(n)].map(() => new TraceRing(TraceRing.buffer()));
    this.fds = new Int32Array(new SharedArrayBuffer(4 * FDS_PER_WORKER * n)).fill(FD_STARTING);
    if (opts.links) this.neighbours = new NeighbourTable();
    this.wakers = [...Array(n)].map(() => new Waker());
    this.pool = new Piscina({
      // '../dataplane/': right both from this file and from dist/src/cli/up.js, where the build bundles it
      // (scripts/bundle.mjs).
      filename: new URL('../dataplane/worker.js', import.meta.url).href,
      minThreads: n,
      maxThreads: n,
      idleTimeout: 2 ** 31 - 1,
      concurrentTasksPerWorker: 1,
      maxQueue: 'auto',
      // A worker allocates nothing per packet, so V8's default young generation (up to 16 MiB of
      // semi-spaces) only holds start-up garbage: 1 MiB keeps each worker about 1 MiB smaller (issue 22).
      resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
    });
    this.pool.on('error', (e: Error) => opts.log('pool-error', { error: e.message }));
  }

  private task(index: number): WorkerTask {
    const o = this.opts;
    return {
      index, count: o.workers, tun: o.tun, ttl: o.ttl, ...(o.cpus?.length ? { cpu: o.cpus[index % o.cpus.length] } : {}), policy: o.policy, offload: o.offload, busyPollUs: o.busyPollUs ?? 0,
      fans: o.fans.map((f) => ({ overlayNet: f.overlay.net, overlayLen: f.overlay.len, underlayNet: f.underlay.net, underlayLen: f.underlay.len, localHost: f.localHost })),
      control: this.control.buffer as SharedArrayBuffer, counters: this.counters.buffer, fds: this.fds.buffer as SharedArrayBuffer,
      waker: this.wakers[index].fd, trace: this.rings[index]?.buffer, ...(o.vxlan ? { vxlan: o.vxlan } : {}),
      ...(this.gso && this.neighbours
        ? { gso: { fd: this.gso.fd, links: this.gso.links.map((l) => ({ ifindex: l.ifindex, macHi: l.macHi, macLo: l.macLo })), neighbours: this.neighbours.buffer } }
        : {}),
    };
  }

  /** Run worker `index`; when it dies after start, replace it and log how long that took. */
  private launch(index: number): void {
    this.running[index] = this.pool.run(this.task(index)).then(
      (r: WorkerResult) => {
        if (this.stopping) return;
        if (r.reason === 'device-gone') this.opts.onFatal(r.detail ?? `TUN ${this.opts.tun} is gone`);
        else this.opts.log('worker-stopped', { worker: index });
      },
      (e: Error) => {
        if (this.stopping) return;
        if (!this.started) {
          this.startError ??= e;
          return;
        }
        this.reclaim(index);
        const diedAt = Date.now();
        this.counters.row(index)[C_RESTARTS]++;
        this.opts.log('worker-died', { worker: index, error: e.message });
        this.launch(index);
        void this.awaitStarted([index], 10_000).then(
          () => this.opts.log('worker-replaced', { worker: index, ms: Date.now() - diedAt }),
          (err: Error) => this.opts.onFatal(`worker ${index} could not be replaced: ${err.message}`),
        );
      },
    );
  }

  /** Close the descriptors a dead worker left open. */
  private reclaim(index: number): void {
    for (let k = FDS_PER_WORKER * index; k < FDS_PER_WORKER * (index + 1); k++) {
      const fd = this.fds[k];
      this.fds[k] = FD_STARTING;
      if (fd >= 0) {
        try {
          native().close(fd);
        } catch {}
      }
    }
  }

  /** Whether worker i holds its TUN queue and raw socket. */
  private holds(i: number): boolean {
    return this.fds[FDS_PER_WORKER * i + FD_TUN] >= 0 && this.fds[FDS_PER_WORKER * i + FD_RAW] >= 0;
  }

  private async awaitStarted(indexes: number[], ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (indexes.every((i) => this.holds(i))) return;
      if (Date.now() > deadline) throw new Error(`workers ${indexes.join(',')} did not open their TUN queue and socket within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Start every worker; resolves when all hold their TUN queue and socket, rejects with the first failure. */
  async start(): Promise<void> {
    const all = [...Array(this.opts.workers).keys()];
    if (this.opts.links && !this.opts.offload) {
      this.gsoWhy = 'off (no TUN offloads: no super-packets to send whole)';
    } else if (this.opts.links) {
      try {
        this.gso = GsoSender.open(this.opts.links.map((l) => l.iface), this.opts.vxlan ? 'vxlan' : 'ipip');
        this.opts.log('tx-gso', { interfaces: this.gso.links.map((l) => l.iface), note: 'TCP super-packets leave whole; the kernel cuts them at the underlay interface' });
      } catch (e) {
        this.gsoWhy = `off (${(e as Error).message})`;
        this.opts.log('tx-gso-off', { error: (e as Error).message, effect: 'super-packets are cut in user space' });
      }
    }
    // The neighbour copy serves TX GSO alone.
    if (this.neighbours && this.gso) {
      this.refreshNeighbours();
      this.neighbourTimer = setInterval(() => this.refreshNeighbours(), this.opts.neighbourRefreshMs ?? NEIGHBOUR_REFRESH_MS);
      this.neighbourTimer.unref();
      this.awaitMiss();
    }
    this.watchKernelNeighbours();
    for (const i of all) this.launch(i);
    const deadline = Date.now() + 10_000;
    while (!all.every((i) => this.holds(i))) {
      if (this.startError) throw this.startError;
      if (Date.now() > deadline) throw new Error(`workers did not open their TUN queues and sockets within 10 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
    this.started = true;
    for (const i of all) this.opts.log('worker-started', { worker: i });
  }

  /**
   * Waits for a worker's lookup to miss (no timer while none does), copies the kernel's table then, and
   * waits again NEIGHBOUR_MISS_CHECK_MS later: while packets go to hosts the table cannot have, that
   * many copies a second at most.
   */
  private awaitMiss(): void {
    void this.neighbours!.whenMissed().then(() => {
      if (this.stopping) return;
      // With more neighbours than the table holds, the rest always miss: the refresh alone copies then.
      if (this.neighbours!.takeMissed() && !this.full) this.copyNeighbours('miss');
      this.missTimer = setTimeout(() => this.awaitMiss(), NEIGHBOUR_MISS_CHECK_MS);
      this.missTimer.unref();
    });
  }

  /**
   * Copies the kernel's ARP entries for the underlay into the workers' table and marks every neighbour
   * for one packet through the kernel (what keeps the kernel resolving and re-checking it).
   */
  private refreshNeighbours(): void {
    this.copyNeighbours('refresh');
    this.neighbours!.markProbes();
  }

  /**
   * Copies the kernel's ARP entries for the underlay into the workers' table: on the refresh, or because
   * a lookup missed (logged with a change as `after`).
   */
  private copyNeighbours(after: 'refresh' | 'miss'): void {
    const t = this.neighbours!;
    try {
      // Interface indexes looked up afresh: an underlay interface that was recreated has a new one.
      const links = this.opts.links!.map((l) => ({ ...l, ifindex: native().ifIndex(l.iface) })).filter((l) => l.ifindex > 0);
      // One more than the table holds: enough to know it is full, without parsing a /16's 65,534 lines.
      const list = readArpTable(links, undefined, MAX_NEIGHBOURS + 1);
      this.neighbourError = '';
      this.full = list.length > MAX_NEIGHBOURS;
      if (this.full && !this.truncationLogged) {
        this.truncationLogged = true;
        this.opts.log('neighbours-truncated', { neighbours: `more than ${MAX_NEIGHBOURS}`, kept: MAX_NEIGHBOURS, rest: 'sent through the raw socket' });
      }
      if (t.replace(list)) this.opts.log('neighbours', { count: t.size, after });
    } catch (e) {
      const why = (e as Error).message;
      if (why !== this.neighbourError) this.opts.log('neighbours-unreadable', { error: why, effect: 'every packet goes through the raw socket' });
      this.neighbourError = why;
      t.replace([]);
    }
  }

  /**
   * Watches the kernel's neighbour table for overflows: a neighbour the kernel could not create drops the
   * packet that needed it, and the raw socket is not told, so this counter (src/underlay/neighbours.ts) is
   * the only sign. Logged at most once a minute, with the limit to raise.
   */
  private watchKernelNeighbours(): void {
    let last = kernelTableFulls();
    if (last === undefined) return;
    this.kernelTableFulls = 0;
    let loggedAt = 0;
    let unlogged = 0;
    this.overflowTimer = setInterval(() => {
      const now = kernelTableFulls();
      if (now === undefined || last === undefined || now <= last) return;
      this.kernelTableFulls = (this.kernelTableFulls ?? 0) + now - last;
      unlogged += now - last;
      last = now;
      if (Date.now() - loggedAt < NEIGHBOUR_OVERFLOW_LOG_MS) return;
      loggedAt = Date.now();
      this.opts.log('kernel-neighbour-table-full', {
        failed: unlogged, total: this.kernelTableFulls, gcThresh3: kernelGcThresh3() ?? 'unreadable here',
        effect: 'the kernel could not add these neighbours and dropped the packets that needed them (userfan is not told)',
        fix: 'raise net.ipv4.neigh.default.gc_thresh3 (and gc_thresh1/2) above the neighbours of this machine: a fan of N hosts on one L2 needs at least N',
      });
      unlogged = 0;
    }, NEIGHBOUR_OVERFLOW_CHECK_MS);
    this.overflowTimer.unref();
  }

  /** Fault injection for tests: make worker i throw, as a crash would. */
  crash(index: number): void {
    Atomics.store(this.control, controlCrashSlot(index), 1);
    this.wakers[index].wake();
  }

  /** Whether a trace can attach (false with up --no-trace). */
  get traceable(): boolean {
    return this.rings.length > 0;
  }

  /** Whether a trace is attached now. */
  get tracing(): boolean {
    return Atomics.load(this.control, CONTROL_TRACE) !== 0;
  }

  /**
   * Ask every worker to copy packets (all, or those with `filter`, a uint32 address, as outer or inner
   * source or destination) into its ring; false if a trace is already attached or tracing is disabled.
   */
  startTrace(filter: number): boolean {
    if (!this.traceable || this.tracing) return false;
    for (const r of this.rings) r.skip();
    Atomics.store(this.control, CONTROL_TRACE_FILTER, filter | 0);
    Atomics.store(this.control, CONTROL_TRACE, 1);
    return true;
  }

  stopTrace(): void {
    Atomics.store(this.control, CONTROL_TRACE, 0);
  }

  /** Hand over what the workers copied since the last call. */
  drainTrace(onRecord: (r: TraceRecord) => void): void {
    for (const r of this.rings) r.drain(onRecord);
  }

  /** Copies lost because a ring was full, since the daemon started. */
  get traceDropped(): number {
    let n = 0;
    for (const r of this.rings) n += r.dropped;
    return n;
  }

  /** Stop every worker (woken at once to see the flag) and the pool. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.neighbourTimer);
    clearTimeout(this.missTimer);
    this.neighbours?.wakeMissWaiters();
    clearInterval(this.overflowTimer);
    Atomics.store(this.control, CONTROL_STOP, 1);
    for (const w of this.wakers) w.wake();
    await Promise.race([Promise.allSettled(this.running), new Promise((r) => setTimeout(r, 3000))]);
    for (let i = 0; i < this.opts.workers; i++) this.reclaim(i);
    await this.pool.destroy();
    this.gso?.close();
    for (const w of this.wakers) w.close();
  }

  /** Whether TX GSO frames go out now (src/underlay/tx-gso.ts). */
  get txGsoOn(): boolean {
    return this.gso !== undefined && !this.gso.closed;
  }

  /**
   * TX GSO: "on (IFACES)", "off (why)", or undefined where it does not apply (--send raw).
   */
  get txGso(): string | undefined {
    const g = this.gso;
    if (g && this.txGsoOn) return `on (${g.links.map((l) => l.iface).join(', ')})`;
    return this.gsoWhy || undefined;
  }
}
