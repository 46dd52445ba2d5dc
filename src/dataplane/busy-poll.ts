/**
 * Busy polling (up --busy-poll US): when a worker runs out of packets, does it sleep at once, or look
 * again for a while first?
 *
 * A sleeping worker must be woken when the next packet comes, and on a VM whose idle vCPUs halt that
 * wake-up is slow (bench/wake.c measures it; docs/performance.md has the figures). An echo through userfan wakes a worker
 * three times. Looking again for a while (poll with no timeout, giving the CPU to any other runnable
 * thread in between: Poller.wait with a spin) keeps the worker awake on its CPU for what comes next:
 * a reply from another machine arrives to a worker that is still looking, with no wake-up. In the lab, where
 * both hosts share one machine, the reply is usually back before the worker even starts looking (the
 * other host's work runs inline in the sender's system calls), and the gain comes from elsewhere: the
 * scheduler keeps the workers on one CPU, with its caches warm (docs/performance.md, latency).
 *
 * That only pays when traffic is sparse, and only then does the worker spin:
 * - after a round that found packets (an idle worker never spins);
 * - when the wait before those packets lasted at least the spin itself (not again right after a spin
 *   that caught something);
 * - when the worker waited for at least IDLE_SHARE of the last completed WINDOW_US of its time, i.e.
 *   its CPU would otherwise go idle. Under load the worker sleeps at once and leaves the CPU to the
 *   threads that make the load: spinning there measured less throughput (docs/performance.md).
 * And the native wait stops looking as soon as a yield has run another thread for a while (the CPU is
 * wanted, so it will not go idle). So a burst of sparse traffic costs at most US µs of CPU after it.
 *
 *   const busy = new BusyPoll(200);
 *   for (;;) {
 *     const n = poller.wait(WAIT_MS, busy.spins ? busy.spinUs : 0);
 *     busy.waited(poller.times);
 *     if (handlePackets() > 0) busy.worked();
 *   }
 */

/** The default spin, µs: about a round trip to another host on a LAN (100, 200 and 500 measured alike in the lab, bench/latency.ts). */
export const DEFAULT_BUSY_POLL_US = 200;
/** The longest spin up accepts, µs. */
export const MAX_BUSY_POLL_US = 10_000;
/** The span over which a worker's share of time spent waiting is measured, µs. */
export const WINDOW_US = 10_000;
/** The share of its time a worker must have spent waiting for it to spin. */
export const IDLE_SHARE = 0.9;

export class BusyPoll {
  #armed = false;
  #longWait = false;
  #idleShare = 0;
  /** The current window: when the last wait ended, and the time waited and worked in it, µs. */
  #lastEnd = -1;
  #waitedUs = 0;
  #workedUs = 0;

  /** spinUs: how long to look before sleeping; 0 turns busy polling off. */
  constructor(readonly spinUs: number) {
    if (!(Number.isInteger(spinUs) && spinUs >= 0 && spinUs <= MAX_BUSY_POLL_US)) {
      throw new RangeError(`busy poll must be a whole number of µs, 0 to ${MAX_BUSY_POLL_US}, not ${spinUs}`);
    }
  }

  /** Whether the next wait should spin first. */
  get spins(): boolean {
    // Every field read, every time: a read that a flood's rounds never reach (&& stops early) deoptimizes
    // the worker loop this is inlined in when sparse traffic first gets there (deopt.test.ts).
    const armed = this.#armed;
    const longWait = this.#longWait;
    const idle = this.#idleShare >= IDLE_SHARE;
    return this.spinUs > 0 && armed && longWait && idle;
  }

  /** The share of the last completed window the worker spent waiting (0 before the first). */
  get idleShare(): number {
    return this.#idleShare;
  }

  /** Tells it that a round found packets. */
  worked(): void {
    this.#armed = true;
  }

  /**
   * Tells it that a wait (spinning or not) ran from times[0] to times[1], µs on a monotonic clock
   * (Poller.times). An array, not two numbers: a double passed to a call V8 does not inline is boxed,
   * an allocation per wait.
   */
  waited(times: Float64Array): void {
    const startUs = times[0];
    const endUs = times[1];
    const waitUs = endUs - startUs;
    if (this.#lastEnd >= 0) this.#workedUs += Math.max(0, startUs - this.#lastEnd);
    this.#lastEnd = endUs;
    this.#waitedUs += waitUs;
    const span = this.#waitedUs + this.#workedUs;
    if (span >= WINDOW_US) {
      this.#idleShare = this.#waitedUs / span;
      this.#waitedUs = 0;
      this.#workedUs = 0;
    }
    this.#longWait = waitUs >= this.spinUs;
    this.#armed = false;
  }
}
