/**
 * A data-plane worker (a piscina task that runs until told to stop). It owns one queue of the TUN device
 * (src/tun/device.ts; a TAP for the VXLAN type) and one underlay (src/underlay/: chosen once, here), and
 * moves packets both ways in batches, with a pure per-batch step between the two boundaries (the fan
 * type's mapping and check, also chosen once):
 *
 *   egress:  device.read → planEgress (map: which host, or why not) → underlay.send (encapsulate, send)
 *   ingress: underlay.receive → planIngress (check, decapsulate) → device.write
 *
 * It never waits for a batch to fill: whatever one read returns goes out at once. While both sides keep
 * finding packets it reads them without polling; once a round finds nothing it sleeps in poll() on the
 * TUN, the underlay and the pool's wake-up eventfd (after a short busy poll, src/dataplane/busy-poll.ts).
 * Nothing is allocated per packet: batches, plans and counters are made once, before the loop.
 */
import { Fan } from '../fan/fan.js';
import { FanTable } from '../fan/table.js';
import { RoutePlan } from '../io/batch.js';
import { C_BUSY_POLL_HITS, C_BUSY_POLLS, C_RX_BATCHES, C_TX_BATCHES, CounterTable } from '../io/counters.js';
import { native } from '../io/native.js';
import { Poller } from '../io/poll.js';
import { TraceRing, TraceTap } from '../io/trace-ring.js';
import { TunDevice } from '../tun/device.js';
import { GsoUnderlay } from '../underlay/gso.js';
import { GSO_FRAME_HEADROOM } from '../underlay/gso-frame.js';
import { RawUnderlay, type RawUnderlayOptions } from '../underlay/raw.js';
import type { Underlay } from '../underlay/underlay.js';
import { VxlanFrames, VxlanUnderlay } from '../underlay/vxlan.js';
import { VXLAN_FRAME_HEADROOM } from '../underlay/vxlan-frame.js';
import { egressRoute, OUTER_HEADER_LEN } from '../wire/ipip.js';
import { VXLAN_HLEN, vxlanDecap, vxlanRoute } from '../wire/vxlan.js';
import { BusyPoll } from './busy-poll.js';
import { planEgress, type RouteFn } from './egress.js';
import { countWriteLosses, type DecapFn, ipipDecap, planIngress } from './ingress.js';
import {
  CONTROL_STOP, CONTROL_TRACE, CONTROL_TRACE_FILTER, controlCrashSlot, FD_RAW, FD_TUN, FDS_PER_WORKER, type WorkerResult, type WorkerTask,
} from './task.js';

/**
 * The longest an idle worker sleeps (the addon's cap). The pool ends a wait at once when it sets the
 * worker's stop or crash word (task.waker), so this bounds nothing a user sees; shorter waits only cost
 * wake-ups (and latency, with several workers per host).
 */
const WAIT_MS = 250;

/** What a worker holds: its two boundaries, its fan type's two plans, and what the loop reads each round. */
interface Worker {
  task: WorkerTask;
  fans: FanTable;
  control: Int32Array;
  c: Float64Array;
  dev: TunDevice;
  underlay: Underlay;
  tap: TraceTap;
  type: FanType;
}

/** A fan type's per-packet steps and its setting for the ingress check (IP-in-IP: policy bits; VXLAN: the VNI). */
interface FanType {
  route: RouteFn;
  decap: DecapFn;
  param: number;
}

export default function runWorker(task: WorkerTask): WorkerResult {
  const fans = new FanTable(task.fans.map((f) => new Fan({ net: f.overlayNet, len: f.overlayLen }, { net: f.underlayNet, len: f.underlayLen }, f.localHost)));
  const c = new CounterTable(task.count, task.counters).row(task.index);
  const fds = new Int32Array(task.fds);
  if (task.cpu !== undefined) native().pinThread(task.cpu);
  const at = FDS_PER_WORKER * task.index;
  const vxlan = task.vxlan;
  const offload = task.offload === true;
  const whole = task.gso !== undefined && offload; // TX GSO: super-packets leave whole, behind a frame's headers
  const headroom = vxlan ? (whole ? VXLAN_FRAME_HEADROOM : VXLAN_HLEN) : whole ? GSO_FRAME_HEADROOM : OUTER_HEADER_LEN;
  const dev = TunDevice.open({ name: task.tun, offload, headroom, tap: vxlan !== undefined });
  fds[at + FD_TUN] = dev.fd;
  let underlay: Underlay | undefined;
  try {
    // The trace ring holds IPv4 packets: for VXLAN the tap writes the outer headers the kernel will.
    const trace = vxlan ? { vni: vxlan.vni, port: vxlan.port, local: task.fans[0].localHost | 0 } : undefined;
    const tap = new TraceTap(task.trace ? new TraceRing(task.trace) : undefined, trace);
    underlay = openUnderlay(task, dev, c, tap);
    fds[at + FD_RAW] = underlay.fd; // last: the pool takes both descriptors open as "started"
    const type: FanType = vxlan ? { route: vxlanRoute, decap: vxlanDecap, param: vxlan.vni } : { route: egressRoute, decap: ipipDecap, param: task.policy };
    return loop({ task, fans, control: new Int32Array(task.control), c, dev, underlay, tap, type });
  } finally {
    for (let k = 0; k < FDS_PER_WORKER; k++) fds[at + k] = -1;
    dev.close();
    underlay?.close();
  }
}

/** The underlay, chosen once: TX GSO where the pool opened it (it needs TUN offloads), else the raw (or VXLAN) socket. */
function openUnderlay(task: WorkerTask, dev: TunDevice, counters: Float64Array, tap: TraceTap): Underlay {
  const raw: RawUnderlayOptions = { bytes: dev.bytes, ttl: task.ttl, index: task.index, count: task.count, counters, tap };
  const gso = task.gso && dev.offload ? { ...raw, ...task.gso, capacity: dev.capacity } : undefined;
  const x = task.vxlan;
  if (x) {
    // With TAP offloads: UDP GSO for super-frames the socket sends, UDP GRO for what arrives.
    const sock = new VxlanUnderlay({ bytes: dev.bytes, port: x.port, vni: x.vni, counters, tap, udpGso: dev.offload, ...(dev.offload ? { udpGro: { rx: dev.toTun } } : {}) });
    return gso ? new GsoUnderlay(gso, sock, new VxlanFrames(x.port, x.vni, task.index, task.count)) : sock;
  }
  return gso ? new GsoUnderlay(gso) : new RawUnderlay(raw);
}

function loop(w: Worker): WorkerResult {
  const { task, fans, control, c, dev, underlay, tap } = w;
  const { route: routeOf, decap, param } = w.type;
  const crashSlot = controlCrashSlot(task.index);
  const plan = new RoutePlan(dev.capacity);
  const route = new Int32Array(2);
  const poller = new Poller(3);
  const TUN = poller.add(dev.fd);
  const SOCK = poller.add(underlay.fd);
  const WAKE = poller.add(task.waker); // the pool's eventfd: readable when it set a control word
  const busy = new BusyPoll(task.busyPollUs ?? 0);
  const spinUs = busy.spinUs;
  const traceable = tap.ring !== undefined;
  const toTun = dev.toTun;
  let idle = true;

  while (Atomics.load(control, CONTROL_STOP) === 0) {
    if (Atomics.load(control, crashSlot) !== 0) {
      Atomics.store(control, crashSlot, 0);
      throw new Error(`worker ${task.index}: crash requested (fault injection)`);
    }
    // Under load both descriptors stay readable: try them directly, and poll (sleep) only when the last
    // round found nothing.
    let tunReady = true;
    let sockReady = true;
    if (idle) {
      // Branch-free on purpose: a counter or property this loop has never touched (the first busy poll
      // after a flood) deoptimizes the whole loop, and sparse traffic is too slow to reoptimize it.
      const spin = busy.spins ? spinUs : 0;
      const ready = poller.wait(WAIT_MS, spin);
      busy.waited(poller.times);
      c[C_BUSY_POLLS] += spin > 0 ? 1 : 0;
      c[C_BUSY_POLL_HITS] += poller.caught() ? 1 : 0;
      if (ready === 0) continue;
      if (poller.readable(WAKE)) native().eventfdRead(task.waker); // the loop's head reads the words
      if (poller.failed(TUN)) return { index: task.index, reason: 'device-gone', detail: `TUN ${task.tun} reported an error (deleted?)` };
      tunReady = poller.readable(TUN);
      sockReady = poller.readable(SOCK) || poller.failed(SOCK);
    } else {
      busy.worked();
    }
    idle = true;
    if (traceable) {
      tap.on = Atomics.load(control, CONTROL_TRACE) !== 0;
      tap.filter = tap.on ? Atomics.load(control, CONTROL_TRACE_FILTER) : 0;
    }

    if (tunReady) {
      let n: number;
      try {
        n = dev.read();
      } catch (e) {
        return { index: task.index, reason: 'device-gone', detail: (e as Error).message };
      }
      if (n > 0) {
        idle = false;
        c[C_TX_BATCHES]++;
        planEgress(dev.bytes, dev.packets, dev.gsoSize, n, fans, plan, route, c, tap, routeOf);
        underlay.send(dev, plan, n);
      }
    }

    if (sockReady) {
      const n = underlay.receive(toTun);
      if (n > 0) {
        idle = false;
        c[C_RX_BATCHES]++;
        planIngress(toTun.bytes, toTun.received, n, toTun.packetCapacity, fans, param, dev.inner, c, tap, decap);
        const lost = dev.write();
        if (lost < 0) return { index: task.index, reason: 'device-gone', detail: dev.error };
        countWriteLosses(lost, c);
      }
    }
  }
  return { index: task.index, reason: 'stopped' };
}
