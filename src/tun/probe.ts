/**
 * Whether a daemon's TUN device can use offloads, decided once in the main thread before any worker
 * attaches a queue: IFF_VNET_HDR is a property of the whole device (the first queue to attach sets it),
 * so every worker must open its queue the same way, and a worker that found out on its own would be too
 * late to change it for the others.
 *
 * The probe attaches one queue with IFF_VNET_HDR and asks for TUNSETOFFLOAD(CSUM | TSO4 | TSO_ECN). If the
 * kernel refuses, `auto` falls back to plain packets (and says why), `on` fails. The probe queue sets the
 * offloads back to none and detaches; the workers ask for them again.
 */
import { native } from '../io/native.js';
import { TunQueue } from './queue.js';

export type OffloadMode = 'auto' | 'on' | 'off';
export const OFFLOAD_MODES: readonly OffloadMode[] = ['auto', 'on', 'off'];

/** The TUNSETOFFLOAD flags userfan asks for: checksums and TCPv4 segmentation (with ECN) left to it. */
export function offloadFlags(): number {
  const n = native();
  return n.TUN_F_CSUM | n.TUN_F_TSO4 | n.TUN_F_TSO_ECN;
}

export interface OffloadDecision {
  on: boolean;
  /** What `show` prints: "on", or "off (why)". */
  text: string;
}

export class OffloadRefused extends Error {}

/** `tap`: the device is a TAP (the VXLAN type), whose frames get the same offloads. */
export function decideOffload(tun: string, mode: OffloadMode, tap = false): OffloadDecision {
  if (mode === 'off') return { on: false, text: 'off (--offload off)' };
  let q: TunQueue | undefined;
  try {
    q = TunQueue.open(tun, { multiQueue: true, vnetHdr: true, tap });
    q.setOffload(offloadFlags());
    return { on: true, text: 'on' };
  } catch (e) {
    const why = (e as Error).message;
    if (mode === 'on') throw new OffloadRefused(`--offload on: the kernel refused TUN offloads on ${tun}: ${why}`);
    return { on: false, text: `off (kernel refused: ${why})` };
  } finally {
    if (q) {
      try {
        q.setOffload(0);
      } catch {}
      q.close();
    }
  }
}
