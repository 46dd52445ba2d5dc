/**
 * One queue of a TUN device (IFF_TUN | IFF_NO_PI, non-blocking): the fd a worker reads inner
 * packets from and writes decapsulated packets to.
 *
 * With `multiQueue`, the first open of a name creates the device and each further open attaches one
 * more queue; the kernel spreads flows over the queues by flow hash. A non-persistent device goes
 * away when its last queue closes.
 *
 * When the device is deleted under a queue (`ip link del`), read/write throw with code `EBADFD` and
 * wait() reports POLLERR for the fd: the queue is dead and must be closed.
 */
import type { PacketBatch, PacketList } from '../io/batch.js';
import { IoErrors } from '../io/errors.js';
import { closeFd, native, rethrowAs, type TunOpenOptions } from '../io/native.js';

export type { TunOpenOptions };

export class TunQueue {
  /** Packets write() skipped because the kernel refused them (EINVAL: not an IP packet, EIO: device down). */
  readonly errors = new IoErrors();
  #fd: number;

  private constructor(
    fd: number,
    readonly name: string,
    readonly options: Readonly<TunOpenOptions>,
  ) {
    this.#fd = fd;
  }

  /**
   * Creates the device (or, with multiQueue, attaches one more queue to it) in the calling thread's
   * network namespace. name may contain %d; the queue's `name` is the actual one.
   */
  static open(name: string, options: TunOpenOptions = {}): TunQueue {
    const { fd, name: actual } = native().tunOpen(name, options);
    return new TunQueue(fd, actual, { ...options });
  }

  /**
   * Deletes a persistent device: attaches a queue, clears persist, closes it. multiQueue must match
   * how the device was created.
   */
  static remove(name: string, options: { multiQueue?: boolean } = {}): void {
    const q = TunQueue.open(name, { multiQueue: options.multiQueue });
    try {
      q.setPersist(false);
    } finally {
      q.close();
    }
  }

  /** The descriptor; -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /**
   * Reads packets until the queue is empty or the batch is full, into batch.received (count, and
   * lengths; batch.truncated(i) when a packet filled its slot: the kernel cut it). Returns the count;
   * 0 if none.
   */
  read(batch: PacketBatch, max = batch.slots): number {
    const r = batch.received;
    try {
      r.count = native().readBatch(this.#fd, batch.bytes, r.offsets, r.lengths, batch.packetCapacity, max);
    } catch (e) {
      r.count = 0;
      rethrowAs(e, this.name);
    }
    return r.count;
  }

  /**
   * Writes packets [from, list.count) to the device (one inner IP packet each). Packets the kernel
   * refuses are skipped and counted in `errors`. Returns the index after the last packet handled
   * (list.count unless the device pushed back with EAGAIN).
   */
  write(list: PacketList, from = 0): number {
    try {
      return native().writeBatch(this.#fd, list.bytes, list.offsets, list.lengths, from, list.count, this.errors.counters);
    } catch (e) {
      rethrowAs(e, this.name);
    }
  }

  /** TUNSETPERSIST. */
  setPersist(on: boolean): void {
    try {
      native().tunSetPersist(this.#fd, on);
    } catch (e) {
      rethrowAs(e, this.name);
    }
  }

  /** TUNSETOFFLOAD with TUN_F_* flags (needs vnetHdr); 0 turns offloads off. */
  setOffload(flags: number): void {
    try {
      native().tunSetOffload(this.#fd, flags);
    } catch (e) {
      rethrowAs(e, this.name);
    }
  }

  /** Closes the queue's fd (idempotent). The device goes when its last non-persistent queue closes. */
  close(): void {
    const fd = this.#fd;
    if (fd < 0) return;
    this.#fd = -1;
    closeFd(fd, this.name);
  }
}
