/**
 * Prometheus metrics (prom-client) for a running daemon: `userfan up --metrics HOST:PORT` serves the same
 * counters `show` and `stats` read, on loopback unless told otherwise. Values are read from the shared
 * counters at scrape time; nothing is counted twice and nothing runs per packet.
 */
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';
import type { Registry } from 'prom-client';
import { DROP_REASONS } from '../wire/drops.js';
import type { DaemonStatus } from './status.js';

/** prom-client, loaded on the first use: a daemon without --metrics does not carry it. */
const promClient = () => createRequire(import.meta.url)('prom-client') as typeof PromClient;

export function metricsRegistry(status: () => DaemonStatus): Registry {
  const { Counter, Gauge, Registry } = promClient();
  const registry = new Registry();
  const perWorker = (name: string, help: string, pick: (s: DaemonStatus['perWorker'][number]) => number) =>
    new Counter({
      name, help, labelNames: ['worker'], registers: [registry],
      collect() {
        this.reset();
        status().perWorker.forEach((w, i) => this.inc({ worker: String(i) }, pick(w)));
      },
    });
  perWorker('userfan_tx_packets_total', 'Packets read from the TUN, encapsulated and sent on the underlay.', (w) => w.txPackets);
  perWorker('userfan_tx_bytes_total', 'Inner bytes of the packets sent.', (w) => w.txBytes);
  perWorker('userfan_tx_link_packets_total', 'Of the packets sent, those sent straight to an underlay neighbour\'s MAC through AF_PACKET (TX GSO\'s segments: up --send gso, the default).', (w) => w.txLinkPackets);
  perWorker('userfan_tx_gso_frames_total', 'TCP super-packets sent whole through AF_PACKET for the kernel to cut (TX GSO: up --send gso, the default, with offloads); their segments count in userfan_tx_packets_total.', (w) => w.txGsoFrames);
  perWorker('userfan_rx_packets_total', 'IP-in-IP packets received, checked, decapsulated and written to the TUN.', (w) => w.rxPackets);
  perWorker('userfan_rx_bytes_total', 'Inner bytes of the packets received.', (w) => w.rxBytes);
  perWorker('userfan_busy_polls_total', 'Waits in which a worker looked again for packets before sleeping, after sparse traffic (up --busy-poll).', (w) => w.busyPolls);
  perWorker('userfan_busy_poll_hits_total', 'Of the busy polls, those that found packets while the worker looked, without a sleep: wake-ups saved.', (w) => w.busyPollHits);
  perWorker('userfan_worker_restarts_total', 'Times a worker died and was replaced.', (w) => w.restarts);
  new Counter({
    name: 'userfan_drops_total',
    help: `Packets dropped, by reason (${DROP_REASONS.length} reasons; see userfan stats).`,
    labelNames: ['reason', 'worker'],
    registers: [registry],
    collect() {
      this.reset();
      status().perWorker.forEach((w, i) => {
        for (const [reason] of DROP_REASONS) this.inc({ reason, worker: String(i) }, w.drops[reason] ?? 0);
      });
    },
  });
  new Gauge({
    name: 'userfan_fan_info', help: 'The fans this daemon carries (value 1).', labelNames: ['overlay', 'underlay', 'local_host', 'slice', 'bridge'], registers: [registry],
    collect() {
      this.reset();
      for (const f of status().fans) this.set({ overlay: f.overlay, underlay: f.underlay, local_host: f.localHost, slice: f.slice, bridge: f.bridge }, 1);
    },
  });
  new Gauge({
    name: 'userfan_workers', help: 'Worker threads.', registers: [registry],
    collect() {
      this.set(status().workers);
    },
  });
  return registry;
}

/** Parse --metrics: PORT, HOST:PORT; loopback unless a host is given. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:(.+):)?(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) > 65535) throw new Error(`--metrics ${JSON.stringify(text)}: expected PORT or HOST:PORT, e.g. 127.0.0.1:9476`);
  return { host: m[1]?.replace(/^\[|\]$/g, '') ?? '127.0.0.1', port: Number(m[2]) };
}

/** Serves /metrics over HTTP. node:http is loaded here, on the first use: a daemon without --metrics does not carry it. */
export async function serveMetrics(listen: { host: string; port: number }, registry: Registry): Promise<Server> {
  const { createServer } = await import('node:http');
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('see /metrics\n');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (e: Error) => res.writeHead(500).end(e.message),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve(server));
  });
}
