/**
 * Waiting for descriptors without blocking a thread for long: poll() with a timeout, so a worker
 * loop can check its stop flag (an Atomics word) between waits and stop within one timeout. A
 * Waker (eventfd) in the set ends a wait at once when another thread asks.
 *
 *   const poller = new Poller();
 *   const tunIx = poller.add(tun.fd);
 *   const wakeIx = poller.add(waker.fd);
 *   while (!Atomics.load(stop, 0)) {
 *     if (poller.wait(20) === 0) continue;
 *     if (poller.readable(tunIx)) ...
 *   }
 */
import { native } from './native.js';

export class Poller {
  readonly #fds: Int32Array;
  readonly #events: Int32Array;
  readonly #revents: Int32Array;
  /** The addon's constants, read once: every property read of the addon's exports is a dictionary lookup. */
  readonly #pollin: number;
  readonly #pollout: number;
  readonly #failedBits: number;
  readonly #caughtBit: number;
  #count = 0;
  #caught = false;
  /**
   * When the last wait() started and ended, µs on CLOCK_MONOTONIC, written by the addon: a clock read
   * without allocating (performance.now() allocates on every call, a scavenge every few seconds here).
   */
  readonly times = new Float64Array(2);

  constructor(capacity = 8) {
    const n = native();
    if (capacity > n.WAIT_MAX) throw new RangeError(`at most ${n.WAIT_MAX} descriptors`);
    this.#pollin = n.POLLIN;
    this.#pollout = n.POLLOUT;
    this.#failedBits = n.POLLERR | n.POLLHUP | n.POLLNVAL;
    this.#caughtBit = n.WAIT_CAUGHT;
    this.#fds = new Int32Array(capacity);
    this.#events = new Int32Array(capacity);
    this.#revents = new Int32Array(capacity);
  }

  /** Watches fd for `events` (default POLLIN); returns its index for readable()/revents(). */
  add(fd: number, events = native().POLLIN): number {
    if (this.#count >= this.#fds.length) throw new RangeError('poller is full');
    const i = this.#count++;
    this.#fds[i] = fd;
    this.#events[i] = events;
    return i;
  }

  /** Changes what index i waits for (e.g. add POLLOUT while a send is pending). */
  setEvents(i: number, events: number): void {
    this.#events[i] = events;
  }

  /**
   * Waits at most timeoutMs (keep it short: the thread cannot stop meanwhile; the addon caps it at
   * WAIT_MAX_MS = 250 ms, negative values included) for any descriptor; returns how many have
   * events (0 on timeout).
   *
   * With spinUs > 0 it first looks again and again for up to that long, giving the CPU to any other
   * runnable thread between looks (sched_yield), and only then sleeps. It stops looking early when a
   * yield ran another thread for a while (the CPU is wanted: it will not go idle). Busy polling
   * (src/dataplane/busy-poll.ts): the thread stays awake on its CPU for what comes next; caught() says
   * whether a look found it, without a sleep.
   */
  wait(timeoutMs: number, spinUs = 0): number {
    const r = native().wait(this.#fds, this.#events, this.#count, timeoutMs, this.#revents, spinUs, this.times);
    const caught = this.#caughtBit;
    this.#caught = r >= caught;
    // A mask, not `caught ? r - caught : r`: a subtraction first run by the first catch (sparse traffic
    // after a flood) deoptimized this and the worker loop it is inlined in (--trace-deopt), and sparse
    // traffic is too slow to get them optimized again.
    return r & (caught - 1);
  }

  /** Whether the last wait() found descriptors ready while looking (busy polling), i.e. without sleeping. */
  caught(): boolean {
    return this.#caught;
  }

  /** What happened to index i in the last wait (POLLIN, POLLOUT, POLLERR, POLLHUP, POLLNVAL bits). */
  revents(i: number): number {
    return this.#revents[i];
  }

  readable(i: number): boolean {
    return (this.#revents[i] & this.#pollin) !== 0;
  }

  writable(i: number): boolean {
    return (this.#revents[i] & this.#pollout) !== 0;
  }

  /**
   * The descriptor is broken: POLLERR (e.g. its TUN device was deleted; for a socket, a pending
   * error that the next receive consumes), POLLHUP, or POLLNVAL (not open).
   */
  failed(i: number): boolean {
    return (this.#revents[i] & this.#failedBits) !== 0;
  }
}

/** An eventfd: wake() from any thread makes it readable; clear() in the waiting thread resets it. */
export class Waker {
  #fd: number;

  constructor() {
    this.#fd = native().eventfdOpen();
  }

  get fd(): number {
    return this.#fd;
  }

  wake(): void {
    native().eventfdWrite(this.#fd);
  }

  /** Returns how many wakes were pending. */
  clear(): number {
    return native().eventfdRead(this.#fd);
  }

  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    native().close(fd);
  }
}
