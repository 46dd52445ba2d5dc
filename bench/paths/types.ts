// What a data path module provides to the bench: setup/teardown on top of the base 2-host topology.
import type { Container, FanTopology, Host } from '../../src/lab/topology.js';

export interface PathEnv {
  topo: FanTopology;
  /** Host A (198.18.0.28): the iperf3 client's side. */
  a: Host;
  /** Host B (198.18.0.27): the iperf3 server's side. */
  b: Host;
  /** userfan workers for the N-worker path. */
  workers: number;
  log(msg: string): void;
}

export interface ProbeEnv {
  /** A scratch namespace the probe may create devices in (it is deleted afterwards). */
  ns: string;
  exec(ns: string | undefined, argv: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

export interface PathInstance {
  /** The iperf3 client's container (on host A) and the server's (on host B). */
  client: Container;
  server: Container;
  /** One line on how the path was built (printed once). */
  info?: string;
  /** Stop what setup started beyond the lab (the lab's destroy() removes the rest). */
  teardown?(): Promise<void>;
}

export interface DataPath {
  name: string;
  /** Cheap availability check, run once. Returns the reason when the path cannot run here. */
  probe(env: ProbeEnv): Promise<string | undefined>;
  setup(env: PathEnv): Promise<PathInstance>;
}

/** A setup that finds the path impossible (rather than broken) throws this. */
export class PathUnavailable extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'PathUnavailable';
  }
}

export async function commandExists(name: string, env: ProbeEnv): Promise<boolean> {
  const r = await env.exec(undefined, ['sh', '-c', 'command -v "$0"', name]);
  return r.code === 0;
}

/**
 * The routed shape most paths share: on each host a lab bridge named like the fan bridge holding the
 * slice's .1 with the given MTU, one container on it (A: 250.0.28.3, B: 250.0.27.3).
 */
export async function bridgedContainers(env: PathEnv, mtu: number): Promise<{ client: Container; server: Container }> {
  const { topo, a, b } = env;
  for (const h of [a, b]) await topo.addBridge(h, h.slice.bridge, `${h.slice.gateway}/${h.slice.prefixLen}`, mtu);
  const client = await topo.addContainer(a, { mtu });
  const server = await topo.addContainer(b, { mtu });
  return { client, server };
}
