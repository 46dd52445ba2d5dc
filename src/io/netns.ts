/**
 * Running a few synchronous calls inside another network namespace, from the calling thread only.
 *
 * setns(CLONE_NEWNET) moves just the calling thread; a descriptor opened meanwhile (TUN queue, raw
 * socket) stays in that namespace for good, whichever thread uses it later. So a test or a worker
 * can open its fds in a lab namespace and go back:
 *
 *   const tun = inNetns('nt123-a', () => TunQueue.open('fan0'));
 *
 * fn must be synchronous (nothing else may run on this thread while it is inside). If going back
 * fails the thread is left in the wrong namespace, so that error is fatal: the process exits.
 */
import { closeSync, openSync } from 'node:fs';
import { native } from './native.js';

/** Path of a namespace made by `ip netns add NAME`. */
export function netnsPath(name: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`bad namespace name: ${name}`);
  return `/run/netns/${name}`;
}

export function inNetns<T>(name: string, fn: () => T): T {
  const n = native();
  const home = openSync('/proc/thread-self/ns/net', 'r');
  let target = -1;
  try {
    target = openSync(netnsPath(name), 'r');
    n.setNetns(target);
    try {
      const result = fn();
      if (result instanceof Promise) throw new Error('inNetns: fn must be synchronous');
      return result;
    } finally {
      try {
        n.setNetns(home);
      } catch (e) {
        process.stderr.write(`inNetns: cannot return to the original network namespace: ${String(e)}\n`);
        process.abort();
      }
    }
  } finally {
    if (target >= 0) closeSync(target);
    closeSync(home);
  }
}
