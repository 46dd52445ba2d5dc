/**
 * userfan running in the namespace lab: the Fan demo topology (topology.ts) with `userfan up` in each
 * host namespace and containers on the bridges it made. Shared by the demo, the integration tests and
 * the bench, so all of them build the same thing the same way.
 */
import { dist } from './paths.js';
import type { ProcessHandle } from './exec.js';
import { createFanTopology, type Container, type ContainerOptions, type FanTopology, type Host, type Target, type TopologyOptions } from './topology.js';

/** The compiled CLI (the lab always runs what `npm run build` made). */
export const CLI = dist('src/main');
export const TRANSFER = dist('src/lab/transfer');

export interface UserfanLabOptions extends TopologyOptions {
  /** Workers per host daemon (default 1: the lab's hosts share this machine's cores). */
  workers?: number;
  /** Extra arguments for every `userfan up`. */
  upArgs?: string[];
  /** Containers per host (default 1). */
  containers?: number;
  /** Called with every log line of every daemon (prefixed with the host's name). */
  onLog?: (host: string, line: string) => void;
  /** Options for node itself, before the CLI (e.g. --trace-deopt). */
  nodeArgs?: string[];
  /** Extra environment for every daemon (e.g. USERFAN_NEIGHBOUR_REFRESH_MS). */
  env?: Record<string, string>;
  /** How containers join (default: the host's slice bridge, e.g. fan-250-0-28 with a /24). */
  container?: ContainerOptions;
}

export interface Daemon {
  host: Host;
  process: ProcessHandle;
}

export class UserfanLab {
  constructor(
    readonly topo: FanTopology,
    readonly daemons: Daemon[],
    /** containers[h][k]: container k of host h. */
    readonly containers: Container[][],
  ) {}

  get hosts(): Host[] {
    return this.topo.hosts;
  }

  /** Run the userfan CLI in a host's namespace. */
  cli(host: Host, args: string[], timeoutMs = 30_000) {
    return this.topo.exec(host, ['node', CLI, ...args], { timeoutMs, allowFail: true });
  }

  /** `userfan show --json` rows for a host. */
  async show(host: Host): Promise<Array<Record<string, any>>> {
    const r = await this.cli(host, ['show', '--json']);
    if (r.code !== 0) throw new Error(`userfan show failed: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  /**
   * A byte-exact TCP transfer of `bytes` from one container to another (or any namespace to an address):
   * returns both sides' byte counts and hashes and the sender's throughput.
   */
  async transfer(from: Target, to: Container, bytes: number, opts: { port?: number; deadlineMs?: number } = {}) {
    const port = opts.port ?? 7000 + Math.floor(Math.random() * 1000);
    const deadlineMs = opts.deadlineMs ?? 90_000;
    const server = this.topo.spawn(to, ['node', TRANSFER, 'serve', '0.0.0.0', String(port), '--deadline-ms', String(deadlineMs)]);
    try {
      await server.waitForLine(/"listening"/, 10_000);
      const c = await this.topo.exec(from, ['node', TRANSFER, 'send', to.address, String(port), String(bytes), '--deadline-ms', String(deadlineMs)], { timeoutMs: deadlineMs + 5000, allowFail: true });
      const sent = JSON.parse(c.stdout.trim().split('\n').pop() || '{}');
      const got = await server.waitForLine(/"sha256"|"error"/, 15_000).then((l) => JSON.parse(l));
      return { sent, received: got, match: !!sent.sha256 && sent.sha256 === got.sha256 && sent.bytes === bytes && got.bytes === bytes };
    } finally {
      await server.stop();
    }
  }

  async destroy(): Promise<void> {
    // SIGTERM first so each daemon tears down what it made (that is part of what tests check).
    await Promise.all(this.daemons.map((d) => d.process.stop(5000)));
    await this.topo.destroy();
  }
}

/** Start a userfan daemon on a host and wait for its "ready" line. */
export async function startDaemon(
  topo: FanTopology, host: Host, args: string[], onLog?: (host: string, line: string) => void, nodeArgs: string[] = [], env?: Record<string, string>,
): Promise<Daemon> {
  const p = topo.spawn(host, ['node', ...nodeArgs, CLI, 'up', ...args], { onLine: onLog ? (l: string) => onLog(host.name, l) : undefined, ...(env ? { env } : {}) });
  try {
    await p.waitForLine(/"event":"ready"/, 20_000);
  } catch (e) {
    throw new Error(`userfan up on host ${host.name} did not become ready: ${(e as Error).message}\n${p.tail?.() ?? ''}`);
  }
  return { host, process: p };
}

/** Build the topology, bring userfan up on every host and put containers on the fan bridges. */
export async function createUserfanLab(opts: UserfanLabOptions = {}): Promise<UserfanLab> {
  const topo = await createFanTopology(opts);
  const daemons: Daemon[] = [];
  try {
    for (const h of topo.hosts) {
      daemons.push(await startDaemon(topo, h, ['-o', h.slice.overlay, '-u', h.underlayCidr, '--workers', String(opts.workers ?? 1), ...(opts.upArgs ?? [])], opts.onLog, opts.nodeArgs, opts.env));
    }
    const containers: Container[][] = [];
    for (const h of topo.hosts) {
      const list: Container[] = [];
      for (let k = 0; k < (opts.containers ?? 1); k++) list.push(await topo.addContainer(h, opts.container));
      containers.push(list);
    }
    return new UserfanLab(topo, daemons, containers);
  } catch (e) {
    await Promise.all(daemons.map((d) => d.process.stop(5000)));
    await topo.destroy();
    throw e;
  }
}
