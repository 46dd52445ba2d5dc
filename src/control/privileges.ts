/** Whether this process may create devices and routes: CAP_NET_ADMIN in its effective set. */
import { readFileSync } from 'node:fs';

const CAP_NET_ADMIN = 12n;

export function hasNetAdmin(): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? ((BigInt(`0x${m[1]}`) >> CAP_NET_ADMIN) & 1n) === 1n : false;
  } catch {
    return false;
  }
}
