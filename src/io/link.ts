/**
 * Interfaces of the calling thread's network namespace, by name: the few ioctls a data plane needs
 * for its TUN device (the lab and the control plane use `ip` for addresses and routes).
 */
import { native } from './native.js';

/** Interface helpers for the calling thread's namespace. */
export const link = {
  /** Interface index, 0 when it does not exist (e.g. the TUN device was deleted). */
  index(name: string): number {
    return native().ifIndex(name);
  },
  exists(name: string): boolean {
    return native().ifIndex(name) !== 0;
  },
  setUp(name: string, up = true): void {
    native().ifSetUp(name, up);
  },
  setMtu(name: string, mtu: number): void {
    native().ifSetMtu(name, mtu);
  },
  /** The queue of packets waiting for the reader (default 500; bigger absorbs bursts). */
  setTxQueueLength(name: string, length: number): void {
    native().ifSetTxQueueLen(name, length);
  },
};
