/**
 * A tiny namespace helper for the native I/O tests (the full lab lives in src/lab/).
 * Names: `<tag><pid><suffix>`; leftovers of a tag whose pid is gone are removed at start.
 */
import { execFileSync } from 'node:child_process';
import { pidAlive } from '../../src/control/pid.js';
import { poll } from './wait.js';

export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Deletes namespaces `<tag><pid>...` whose pid no longer runs. */
export function removeStale(tag: string): void {
  const re = new RegExp(`^${tag}(\\d+)[a-z]+$`);
  for (const line of ip('netns', 'list').split('\n')) {
    const name = line.split(' ')[0];
    const m = re.exec(name);
    if (m && !pidAlive(Number(m[1]))) {
      try {
        ip('netns', 'del', name);
      } catch {
        /* gone meanwhile */
      }
    }
  }
}

export class MiniLab {
  readonly prefix: string;
  readonly #made: string[] = [];

  constructor(tag: string) {
    removeStale(tag);
    this.prefix = `${tag}${process.pid}`;
  }

  /** Creates namespace <prefix><suffix> with lo up and IPv6 off (no router solicitations on TUNs). */
  ns(suffix: string): string {
    const name = `${this.prefix}${suffix}`;
    ip('netns', 'add', name);
    this.#made.push(name);
    ip('-n', name, 'link', 'set', 'lo', 'up');
    execFileSync('ip', ['netns', 'exec', name, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1',
      'net.ipv6.conf.default.disable_ipv6=1'], { timeout: 10_000 });
    return name;
  }

  /** A veth pair between two namespaces: `dev` in a with addrA, `dev` in b with addrB (CIDR). */
  link(a: string, addrA: string, b: string, addrB: string, dev = 'u0'): void {
    ip('-n', a, 'link', 'add', 'name', dev, 'type', 'veth', 'peer', 'name', dev, 'netns', b);
    ip('-n', a, 'addr', 'add', addrA, 'dev', dev);
    ip('-n', b, 'addr', 'add', addrB, 'dev', dev);
    ip('-n', a, 'link', 'set', dev, 'up');
    ip('-n', b, 'link', 'set', dev, 'up');
  }

  /** Deletes every namespace made here (their devices go with them). */
  destroy(): void {
    for (const name of this.#made.splice(0)) {
      try {
        ip('netns', 'del', name);
      } catch {
        /* already gone */
      }
    }
  }
}

/** Polls cond every intervalMs until it returns true or timeoutMs passes; returns its last value. */
export const until = (cond: () => boolean, timeoutMs = 2000, intervalMs = 2): Promise<boolean> => poll(cond, { timeoutMs, intervalMs });
