/**
 * UDP traffic for the integration tests, written once: a counting listener in a namespace, and small
 * senders (node -e programs run in a namespace; their timers are the traffic's shape, not a wait).
 */
import type { ProcessHandle } from '../../src/lab/exec.js';
import type { FanTopology, Target } from '../../src/lab/topology.js';

/** A listener that counts the datagrams it receives on a port. */
export interface UdpCounter {
  proc: ProcessHandle;
  /**
   * How many it received: once it has received `exitAt` it says so and exits by itself; otherwise (or if it
   * has not within waitMs) it is stopped and says how many it got.
   */
  count(waitMs?: number): Promise<number>;
}

/** Starts a counting UDP listener on `port` in `where` and resolves once it is bound. */
export async function udpCounter(topo: FanTopology, where: Target, port: number, opts: { exitAt?: number } = {}): Promise<UdpCounter> {
  const exitAt = opts.exitAt ?? 0;
  const js =
    `const s=require('dgram').createSocket('udp4');let n=0;` +
    `s.on('message',()=>{if(++n===${exitAt}){console.log('got '+n);process.exit(0)}});` +
    `s.bind(${port},()=>console.log('bound'));process.on('SIGTERM',()=>{console.log('got '+n);process.exit(0)})`;
  const proc = topo.spawn(where, ['node', '-e', js]);
  await proc.waitForLine(/^bound$/, 5000);
  return {
    proc,
    async count(waitMs = 5000) {
      const line = exitAt > 0 ? await proc.waitForLine(/^got \d+$/, waitMs).catch(() => undefined) : undefined;
      if (line === undefined) await proc.stop(2000);
      const said = line ?? proc.lines.map((l) => l.line).find((l) => /^got \d+$/.test(l));
      if (said === undefined) throw new Error(`the UDP listener on port ${port} said nothing: ${proc.tail()}`);
      return Number(said.slice(4));
    },
  };
}

/**
 * `count` datagrams of `size` bytes (byte i of datagram i is i) to dst:port, in groups of `group` every
 * `everyMs` so no queue on the way overflows. Returns once all are sent.
 */
export async function sendUdpBurst(topo: FanTopology, from: Target, dst: string, port: number, opts: { count: number; size: number; group?: number; everyMs?: number }): Promise<void> {
  const { count, size, group = 20, everyMs = 2 } = opts;
  const js =
    `const s=require('dgram').createSocket('udp4');let i=0;` +
    `const go=()=>{for(let k=0;k<${group}&&i<${count};k++,i++)s.send(Buffer.alloc(${size},i),${port},'${dst}');` +
    `if(i<${count})setTimeout(go,${everyMs});else setTimeout(()=>process.exit(0),50)};go()`;
  await topo.exec(from, ['node', '-e', js]);
}

/**
 * `pairs` pairs of small datagrams to dst, port 9 (discard): the second of each `apartMs` after the first
 * (0: back to back, one read takes both), a pair every `everyMs`. The shape sparse traffic has after a
 * quiet spell (busy polling, deoptimization).
 */
export async function sendUdpPairs(topo: FanTopology, from: Target, dst: string, opts: { pairs: number; apartMs: number; everyMs: number }): Promise<void> {
  const { pairs, apartMs, everyMs } = opts;
  const second = `s.send('second',9,'${dst}');if(++i<${pairs})setTimeout(go,${everyMs});else setTimeout(()=>s.close(),20)`;
  const js =
    `const s=require('dgram').createSocket('udp4');let i=0;` +
    (apartMs > 0 ? `const go=()=>{s.send('first',9,'${dst}');setTimeout(()=>{${second}},${apartMs})};go();` : `const go=()=>{s.send('first',9,'${dst}');${second}};go();`);
  await topo.exec(from, ['node', '-e', js]);
}
