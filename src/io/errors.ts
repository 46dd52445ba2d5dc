/**
 * Counters of packets the kernel refused in a batch call. The batch calls never throw for one bad
 * packet: they skip it and count it here, by kind. The counters accumulate until reset().
 */
import { constants } from 'node:os';
import { native } from './native.js';

const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, num]) => [num, name]),
);

/** Name of a (positive) errno number, e.g. 90 → "EMSGSIZE". */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

export interface IoErrorSnapshot {
  total: number;
  last: string | null;
  messageTooBig: number;
  unreachable: number;
  noBuffers: number;
  invalid: number;
  denied: number;
  deviceDown: number;
  other: number;
}

export class IoErrors {
  /** Passed to the native batch calls; layout given by the addon's ERR_* constants. */
  readonly counters: Uint32Array;
  readonly #n = native();

  constructor() {
    this.counters = new Uint32Array(this.#n.ERR_SLOTS);
  }

  /** Every packet refused. */
  get total(): number { return this.counters[this.#n.ERR_TOTAL]; }
  /** errno name of the latest refusal, null if none yet. */
  get last(): string | null {
    return this.total === 0 ? null : errnoName(this.counters[this.#n.ERR_LAST]);
  }
  /** EMSGSIZE: bigger than the path MTU with DF, or than the device MTU. */
  get messageTooBig(): number { return this.counters[this.#n.ERR_MSGSIZE]; }
  /** ENETUNREACH, EHOSTUNREACH, ENETDOWN, EHOSTDOWN, and ICMP reports (ECONNREFUSED, ENOPROTOOPT). */
  get unreachable(): number { return this.counters[this.#n.ERR_UNREACH]; }
  /** ENOBUFS, ENOMEM. */
  get noBuffers(): number { return this.counters[this.#n.ERR_NOBUFS]; }
  /** EINVAL: a malformed packet. */
  get invalid(): number { return this.counters[this.#n.ERR_INVAL]; }
  /** EPERM, EACCES: a firewall dropped it. */
  get denied(): number { return this.counters[this.#n.ERR_PERM]; }
  /** EIO: the TUN device is down. */
  get deviceDown(): number { return this.counters[this.#n.ERR_IO]; }
  get other(): number { return this.counters[this.#n.ERR_OTHER]; }

  reset(): void {
    this.counters.fill(0);
  }

  snapshot(): IoErrorSnapshot {
    return {
      total: this.total, last: this.last, messageTooBig: this.messageTooBig, unreachable: this.unreachable,
      noBuffers: this.noBuffers, invalid: this.invalid, denied: this.denied, deviceDown: this.deviceDown,
      other: this.other,
    };
  }
}
