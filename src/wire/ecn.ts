/**
 * ECN across the tunnel, RFC 6040 normal mode, as Linux does it.
 */
import { ECN_CE, ECN_ECT0, ECN_ECT1, ECN_NOT_ECT } from './ipv4.js';

/**
 * Encapsulation: the outer ECN field copies the inner one, except that an inner CE goes out as ECT(0)
 * (Linux's INET_ECN_encapsulate, so a congestion mark is not counted twice on the way).
 */
export function encapEcn(inner: number): number {
  return inner === ECN_CE ? ECN_ECT0 : inner;
}

/** Returned by decapEcn when RFC 6040 says drop. */
export const ECN_DROP = -1;

/**
 * Decapsulation, RFC 6040 section 4.2 (inner row × outer column):
 *   Not-ECT inner: outer CE → drop; otherwise Not-ECT.
 *   ECT(0) inner:  outer ECT(1) → ECT(1); outer CE → CE; otherwise ECT(0).
 *   ECT(1) inner:  outer CE → CE; otherwise ECT(1).
 *   CE inner:      CE.
 */
export function decapEcn(inner: number, outer: number): number {
  if (inner === ECN_NOT_ECT) return outer === ECN_CE ? ECN_DROP : ECN_NOT_ECT;
  if (outer === ECN_CE) return ECN_CE;
  if (inner === ECN_ECT0 && outer === ECN_ECT1) return ECN_ECT1;
  return inner;
}
