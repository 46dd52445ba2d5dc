// The interop lab (src/lab/interop.ts runs the checks): two hosts on one underlay, a veth pair.
//   host A (namespace)  198.18.0.28  userfan up -o 250.0.0.0/8 -u 198.18.0.28/16, container 250.0.28.3 on fan-250-0-28
//   host B (user-mode Linux 6.1, a real kernel with ipip.ko)  198.18.0.27, tunl0 + route 250.0.28.0/24 via
//        198.18.0.28 dev tunl0 onlink (the Fan on a kernel without fan-map), container 250.0.27.3 on fan-250-0-27;
//        B's end of the veth carries the guest's NIC.
//
// Checksum offload: a Linux sender whose ipip packets leave through a veth with TX checksum offload on hands the
// peer CHECKSUM_PARTIAL packets (and, with TSO, 64 KiB IP-in-IP super-packets): a raw socket on the other side
// then sees the inner TCP checksum unfinished. A real NIC always completes checksums and segments before the
// wire, so the lab makes the kernel host's underlay behave like a wire: `ethtool -K VETH tx off` on the veth the
// guest sends through (--keep-offload leaves it on). Measured here: the user-mode Linux guest completes inner
// checksums itself (its NIC has no encapsulation offloads), so with this peer both settings pass; the setting
// matters for a native kernel peer on the same machine (kernel ipip in one namespace, userfan in another).
// userfan's end is made a wire too: `ethtool -K VETH tx-ipxip4-segmentation off tx off` on host A's veth, as
// a NIC without IP-in-IP segmentation, so with TX GSO (the default --send gso) the kernel cuts userfan's whole
// frames into wire-sized segments with complete checksums before the guest's NIC reads them (a veth would
// carry them whole, and the guest's NIC takes at most its MTU).
import { existsSync } from 'node:fs';
import { Lab } from './netns.js';
import { FanTopology, type Container, type Host } from './topology.js';
import type { ProcessHandle } from './exec.js';
import { startUml } from './uml.js';
import type { UmlGuest } from './uml-guest.js';
import { fanSliceOf, kernelFanScript, parseLinkStats } from './uml-scripts.js';
import { CLI } from './userfan-lab.js';

export interface InteropCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** Informational findings that are not pass/fail. */
  info?: boolean;
}

export interface InteropOptions {
  /** Leave TX checksum offload on the kernel host's veth (shows the gotcha). Default false. */
  keepOffload?: boolean;
  /** Bytes for each TCP transfer (default 16 MiB). */
  tcpBytes?: number;
  log?: (msg: string) => void;
  /** userfan up extra arguments (e.g. ['--workers', '1']). */
  userfanArgs?: string[];
}

export const A_UL = '198.18.0.28';
export const B_UL = '198.18.0.27';
export const UL_LEN = 16;
export const OVERLAY = '250.0.0.0/8';
export const A_C = '250.0.28.3';
export const B_C = '250.0.27.3';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a value other than undefined; bounded. */
export async function pollFor<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, intervalMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() >= until) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(intervalMs);
  }
}

export class InteropLab {
  readonly checks: InteropCheck[] = [];
  lab!: Lab;
  topo!: FanTopology;
  hostA!: Host;
  nsB!: string;
  vethA!: string;
  vethB!: string;
  guest!: UmlGuest;
  userfan?: ProcessHandle;
  ca!: Container;
  work!: string;
  kernel = '?';

  constructor(readonly opts: InteropOptions) {}

  log(m: string): void {
    this.opts.log?.(m);
  }

  check(name: string, ok: boolean, detail: string): boolean {
    this.checks.push({ name, ok, detail });
    this.log(`${ok ? 'PASS' : 'FAIL'} ${name}: ${detail}`);
    return ok;
  }

  info(name: string, detail: string): void {
    this.checks.push({ name, ok: true, detail, info: true });
    this.log(`INFO ${name}: ${detail}`);
  }

  /** Run a check body; an exception is a failed check, not an aborted run. */
  async step(name: string, body: () => Promise<string | { ok: boolean; detail: string }>): Promise<boolean> {
    try {
      const r = await body();
      return typeof r === 'string' ? this.check(name, true, r) : this.check(name, r.ok, r.detail);
    } catch (e) {
      return this.check(name, false, ((e as Error).message ?? String(e)).split('\n').slice(0, 6).join(' | '));
    }
  }

  async tunl0(): Promise<ReturnType<typeof parseLinkStats>> {
    return parseLinkStats(await this.guest.execOk('ip -s -j link show dev tunl0'));
  }

  /** `userfan ARGS` in host A, its stdout parsed as JSON. */
  async userfanJson(args: string[]): Promise<unknown> {
    const r = await this.lab.exec(this.hostA.ns, [process.execPath, CLI, ...args], { timeoutMs: 15_000 });
    return JSON.parse(r.stdout) as unknown;
  }

  async userfanCounters(): Promise<{ rx: number; tx: number; drops: Record<string, number> }> {
    const parsed = await this.userfanJson(['show', '--json']);
    const rows = (Array.isArray(parsed) ? parsed : ((parsed as { fans?: unknown[]; rows?: unknown[] }).fans ?? (parsed as { rows?: unknown[] }).rows ?? [])) as {
      rxPackets: number | null;
      txPackets: number | null;
      dropsByReason?: Record<string, number>;
    }[];
    const row = rows[0];
    if (!row) throw new Error(`userfan show --json lists no fan: ${JSON.stringify(parsed).slice(0, 300)}`);
    return { rx: row.rxPackets ?? 0, tx: row.txPackets ?? 0, drops: row.dropsByReason ?? {} };
  }

  async setup(): Promise<void> {
    this.lab = await Lab.create();
    const ns = await this.lab.addNamespace('A', { forwarding: true });
    this.nsB = await this.lab.addNamespace('B');
    this.vethA = this.lab.ifName('uA');
    this.vethB = this.lab.ifName('uB');
    await this.lab.addVeth({ ns, name: this.vethA, mtu: 1500 }, { ns: this.nsB, name: this.vethB, mtu: 1500 });
    await this.lab.exec(ns, ['ip', 'addr', 'add', `${A_UL}/${UL_LEN}`, 'dev', this.vethA]);
    await this.lab.exec(ns, ['ethtool', '-K', this.vethA, 'tx-ipxip4-segmentation', 'off', 'tx', 'off']);
    const sA = fanSliceOf(OVERLAY, A_UL, UL_LEN);
    this.hostA = {
      name: 'A', ns, underlayIf: this.vethA, underlay: A_UL, underlayLen: UL_LEN, underlayCidr: `${A_UL}/${UL_LEN}`,
      slice: {
        overlay: OVERLAY, underlay: `198.18.0.0/${UL_LEN}`, network: sA.network, prefixLen: sA.prefixLen,
        cidr: `${sA.network}/${sA.prefixLen}`, gateway: sA.gateway, bridge: sA.bridge,
      },
    };
    this.topo = new FanTopology(this.lab, [this.hostA], undefined, false);

    // host B: a real kernel
    this.guest = await startUml({
      ns: this.nsB, veths: [this.vethB], lab: this.lab, cpu: 1, timeoutMs: 600_000, name: 'umiop',
      txChecksumOff: !this.opts.keepOffload,
      script: kernelFanScript({ underlay: B_UL, underlayLen: UL_LEN, remotes: [A_UL], rpFilter: 1 }) + 'uf_serve 590\n',
    });
    this.work = this.guest.dir;

    // host A: userfan
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: npm run build`);
    this.userfan = this.lab.spawn(ns, [process.execPath, CLI, 'up', '-o', OVERLAY, '-u', `${A_UL}/${UL_LEN}`, ...(this.opts.userfanArgs ?? [])], { keepLines: 500 });
    const [ready] = await Promise.all([
      this.userfan.waitForLine((l) => {
        try {
          return (JSON.parse(l) as { event?: string }).event === 'ready';
        } catch {
          return false;
        }
      }, 60_000),
      this.guest.ready(), // as long as a boot may take on a loaded machine
    ]);
    this.log(`userfan ready: ${ready}`);
    this.ca = await this.topo.addContainer(this.hostA, { address: A_C, waitForBridgeMs: 10_000 });
    const ko = (await this.guest.execOk('uname -r; lsmod | grep -c "^ipip "')).trim().split('\n');
    this.kernel = ko[0];
    this.log(`kernel host B: user-mode Linux ${ko[0]}, ipip loaded: ${ko[1] === '1' ? 'yes' : 'no'}; checksum offload on ${this.vethB}: ${this.opts.keepOffload ? 'left on' : 'tx off'}`);
  }

  async destroy(): Promise<void> {
    if (this.userfan?.running) await this.userfan.stop(10_000).catch(() => undefined);
    if (this.guest) {
      if (this.guest.running) await this.guest.shutdown(10_000).catch(() => undefined);
      await this.guest.dispose();
    }
    await this.lab?.destroy();
  }
}
