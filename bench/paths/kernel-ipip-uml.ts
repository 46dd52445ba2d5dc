// kernel-ipip-uml: kernel IP-in-IP measured where this kernel has none, inside user-mode Linux.
//
// Two user-mode Linux hosts (Linux 6.1 as processes, each pinned to its own CPU), joined by a veth pair, each in
// its own host namespace. Each is set up as the Fan sets up a kernel without fan-map (tunl0, a route per remote
// slice, the fan bridge with a container behind it, MTU 1480). iperf3 runs between the containers:
//   ipip   250.0.28.3 -> 250.0.27.3 through tunl0 (route 250.0.27.0/24 via 198.18.0.27 dev tunl0 onlink)
//   plain  the same containers, bridges and forwarding, the remote slice routed via vec0 without encapsulation
// The guests' NIC (virtio-net headers on a packet socket) carries TCP super-packets but has no GSO type for
// IP-in-IP, so between two guests ipip crosses it one MTU-sized packet at a time while plain crosses it in
// 64 KiB chunks. So the same pair of paths is also measured within ONE guest kernel ("one kernel"): two host
// namespaces inside it on a veth (which does carry IP-in-IP GSO), each with tunl0, bridge and container.
// Runs alternate ipip/plain. Only the ratio of the two is meaningful: system calls inside user-mode Linux cost
// ~50x native, so absolute numbers are far below a native kernel's, and userspace data paths must never be
// measured in there. The harness (bench/iperf.ts) calls measureKernelIpipUml for `--kernel-ipip uml`; run alone:
//   node dist/bench/paths/kernel-ipip-uml.js [--seconds 5] [--repeat 3] [--json]
import { pathToFileURL } from 'node:url';
import { Lab } from '../../src/lab/netns.js';
import { startUml } from '../../src/lab/uml.js';
import type { UmlGuest } from '../../src/lab/uml-guest.js';
import { umlMissing } from '../../src/lab/uml-kernel.js';
import { kernelFanScript } from '../../src/lab/uml-scripts.js';

export const KERNEL_IPIP_UML_LABEL =
  'measured inside user-mode Linux (Linux 6.1 as a process, one CPU per guest, vector NIC on veth): ' +
  'only kernel paths are fair there; compare kernel ipip with its own plain ceiling, not with native numbers';

export interface KernelIpipUmlOptions {
  /** iperf3 seconds per run (default 5; 1 more is run and omitted as TCP warm-up). */
  seconds?: number;
  /** Runs of each path (default 3). */
  repeat?: number;
  /** Progress lines (default: none). */
  log?: (msg: string) => void;
}

export interface KernelIpipUmlResult {
  path: 'kernel-ipip-uml';
  label: string;
  /** Gbit/s received, one per run, single TCP stream container to container. */
  ipip: number[];
  plain: number[];
  ipipMedian: number;
  plainMedian: number;
  /** ipipMedian / plainMedian: kernel ipip's fraction of its own plain-link ceiling. */
  fraction: number;
  /** TCP retransmits per run. */
  retransmits: { ipip: number[]; plain: number[] };
  /** The same two paths between two host namespaces inside one guest kernel, on a veth. */
  oneKernel: { ipip: number[]; plain: number[]; ipipMedian: number; plainMedian: number; fraction: number };
  seconds: number;
  repeat: number;
  guestKernel: string;
}

export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const A = { underlay: '198.18.0.28', slice: '250.0.28.0/24', container: '250.0.28.3' };
const B = { underlay: '198.18.0.27', slice: '250.0.27.0/24', container: '250.0.27.3' };

type Mode = 'ipip' | 'plain';

async function routeVia(g: UmlGuest, slice: string, peer: string, mode: Mode, dev = 'vec0', ns?: string): Promise<void> {
  const n = ns ? `-n ${ns} ` : '';
  await g.execOk(`ip ${n}route replace ${slice} via ${peer} dev ${mode === 'ipip' ? 'tunl0' : dev} onlink`);
}

/** Two Fan hosts as namespaces k1 (A) and k2 (B) inside one guest, on a veth, each with tunl0, bridge, container. */
function oneKernelScript(): string {
  const host = (k: string, peerIf: string, h: typeof A, other: typeof A) => {
    const gw = h.slice.replace(/0\/24$/, '1');
    const br = 'fan-' + h.slice.split('.').slice(0, 3).join('-');
    return [
      `ip -n ${k} addr add ${h.underlay}/16 dev ${peerIf}`,
      `ip -n ${k} link set dev ${peerIf} up`,
      `ip -n ${k} link set dev tunl0 mtu 1480 up`,
      `ip -n ${k} route add ${other.slice} via ${other.underlay} dev tunl0 onlink`,
      `ip -n ${k} link add name ${br} type bridge`,
      `ip -n ${k} link set dev ${br} mtu 1480 up`,
      `ip -n ${k} addr add ${gw}/24 dev ${br}`,
      `ip netns add ${k}c`,
      `ip -n ${k} link add name ${k}ch type veth peer name eth0 netns ${k}c`,
      `ip -n ${k} link set dev ${k}ch mtu 1480 master ${br} up`,
      `ip -n ${k}c link set dev lo up`,
      `ip -n ${k}c link set dev eth0 mtu 1480 up`,
      `ip -n ${k}c addr add ${h.container}/24 dev eth0`,
      `ip -n ${k}c route add default via ${gw} dev eth0`,
    ].join('\n');
  };
  return [
    'set -e',
    'for k in k1 k2; do ip netns add $k; ip -n $k link set lo up;',
    '  ip netns exec $k sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.tunl0.rp_filter=1; done',
    'ip link add name u1 netns k1 type veth peer name u2 netns k2',
    host('k1', 'u1', A, B),
    host('k2', 'u2', B, A),
    'ip netns exec k2c iperf3 -s -D -p 5202 --logfile /tmp/iperf3-k.log',
    "for i in $(seq 100); do ip netns exec k2c ss -ltn | grep -q ':5202 ' && exit 0; sleep 0.05; done; exit 1",
  ].join('\n');
}

async function iperfRun(g: UmlGuest, ns: string, server: string, port: number, seconds: number, what: string): Promise<{ gbps: number; retransmits: number }> {
  const r = await g.exec(`ip netns exec ${ns} iperf3 -c ${server} -p ${port} -t ${seconds} -O 1 -J --connect-timeout 3000`, {
    timeoutMs: (seconds + 20) * 1000,
  });
  let j: { end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } }; error?: string };
  try {
    j = JSON.parse(r.output.slice(r.output.indexOf('{')));
  } catch {
    throw new Error(`iperf3 (${what}) gave no JSON (status ${r.code}):\n${r.output.slice(-2000)}`);
  }
  if (r.code !== 0 || !j.end?.sum_received) throw new Error(`iperf3 (${what}) failed: ${j.error ?? r.output.slice(-1000)}`);
  return { gbps: j.end.sum_received.bits_per_second / 1e9, retransmits: j.end.sum_sent?.retransmits ?? 0 };
}

export async function measureKernelIpipUml(opts: KernelIpipUmlOptions = {}): Promise<KernelIpipUmlResult> {
  const missing = umlMissing();
  if (missing) throw new Error(`kernel-ipip-uml unavailable: ${missing}`);
  const seconds = opts.seconds ?? 5;
  const repeat = opts.repeat ?? 3;
  const log = opts.log ?? (() => undefined);
  const lab = await Lab.create();
  const guests: UmlGuest[] = [];
  try {
    const nsA = await lab.addNamespace('uA');
    const nsB = await lab.addNamespace('uB');
    const vA = lab.ifName('vA');
    const vB = lab.ifName('vB');
    await lab.addVeth({ ns: nsA, name: vA }, { ns: nsB, name: vB });
    const life = (seconds + 15) * repeat * 4 * 1000 + 120_000;
    const a = await startUml({
      ns: nsA, veths: [vA], lab, cpu: 0, timeoutMs: life, name: 'umbA',
      script: kernelFanScript({ underlay: A.underlay, underlayLen: 16, remotes: [B.underlay] }) + `uf_serve ${Math.ceil(life / 1000)}\n`,
    });
    guests.push(a);
    const b = await startUml({
      ns: nsB, veths: [vB], lab, cpu: 1, timeoutMs: life, name: 'umbB',
      script: kernelFanScript({ underlay: B.underlay, underlayLen: 16, remotes: [A.underlay] }) + `uf_serve ${Math.ceil(life / 1000)}\n`,
    });
    guests.push(b);
    await Promise.all([a.ready(60_000), b.ready(60_000)]);
    const guestKernel = (await a.execOk('uname -r')).trim();
    log(`kernel-ipip-uml: two user-mode Linux ${guestKernel} hosts up (${lab.prefix})`);
    await b.execOk(`ip netns exec c0 iperf3 -s -D -p 5201 --logfile /tmp/iperf3.log`);
    // the server needs a moment to listen: wait for the port, bounded
    await b.execOk(`for i in $(seq 100); do ip netns exec c0 ss -ltn | grep -q ':5201 ' && exit 0; sleep 0.05; done; exit 1`);
    const res: KernelIpipUmlResult = {
      path: 'kernel-ipip-uml',
      label: KERNEL_IPIP_UML_LABEL,
      ipip: [],
      plain: [],
      ipipMedian: NaN,
      plainMedian: NaN,
      fraction: NaN,
      retransmits: { ipip: [], plain: [] },
      oneKernel: { ipip: [], plain: [], ipipMedian: NaN, plainMedian: NaN, fraction: NaN },
      seconds,
      repeat,
      guestKernel,
    };
    for (let i = 0; i < repeat; i++) {
      for (const mode of ['ipip', 'plain'] as const) {
        await routeVia(a, B.slice, B.underlay, mode);
        await routeVia(b, A.slice, A.underlay, mode);
        const rxBefore = Number((await b.execOk('cat /sys/class/net/tunl0/statistics/rx_packets')).trim());
        const { gbps, retransmits } = await iperfRun(a, 'c0', B.container, 5201, seconds, mode);
        const rxAfter = Number((await b.execOk('cat /sys/class/net/tunl0/statistics/rx_packets')).trim());
        const decapsulated = rxAfter - rxBefore;
        // the path really was what it claims: ipip runs go through tunl0, plain runs do not
        if (mode === 'ipip' && decapsulated < 1000) throw new Error(`ipip run: tunl0 on the receiver decapsulated only ${decapsulated} packets`);
        if (mode === 'plain' && decapsulated > 100) throw new Error(`plain run: tunl0 decapsulated ${decapsulated} packets`);
        res[mode].push(gbps);
        res.retransmits[mode].push(retransmits);
        log(`kernel-ipip-uml: run ${i + 1}/${repeat} two guests ${mode.padEnd(5)} ${gbps.toFixed(2)} Gbit/s`);
      }
    }
    await a.execOk(oneKernelScript());
    for (let i = 0; i < repeat; i++) {
      for (const mode of ['ipip', 'plain'] as const) {
        await routeVia(a, B.slice, B.underlay, mode, 'u1', 'k1');
        await routeVia(a, A.slice, A.underlay, mode, 'u2', 'k2');
        const { gbps } = await iperfRun(a, 'k1c', B.container, 5202, seconds, `one kernel ${mode}`);
        res.oneKernel[mode].push(gbps);
        log(`kernel-ipip-uml: run ${i + 1}/${repeat} one kernel ${mode.padEnd(5)} ${gbps.toFixed(2)} Gbit/s`);
      }
    }
    res.oneKernel.ipipMedian = median(res.oneKernel.ipip);
    res.oneKernel.plainMedian = median(res.oneKernel.plain);
    res.oneKernel.fraction = res.oneKernel.ipipMedian / res.oneKernel.plainMedian;
    res.ipipMedian = median(res.ipip);
    res.plainMedian = median(res.plain);
    res.fraction = res.ipipMedian / res.plainMedian;
    await Promise.all(guests.map((g) => g.shutdown(15_000)));
    return res;
  } finally {
    await Promise.all(guests.map((g) => g.dispose()));
    await lab.destroy();
  }
}

function fmt(xs: number[]): string {
  return `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
}

export function formatKernelIpipUml(r: KernelIpipUmlResult): string {
  return [
    `kernel-ipip-uml — ${r.label}`,
    `guest kernel ${r.guestKernel}; iperf3, 1 TCP stream container to container, ${r.seconds} s × ${r.repeat} runs each, interleaved`,
    '',
    '| path (inside user-mode Linux) | Gbit/s median (range) | runs |',
    '| --- | --- | --- |',
    `| two guests on a veth: plain routing (ceiling) | ${fmt(r.plain)} | ${r.plain.map((x) => x.toFixed(2)).join(', ')} |`,
    `| two guests on a veth: kernel ipip via tunl0 | ${fmt(r.ipip)} | ${r.ipip.map((x) => x.toFixed(2)).join(', ')} |`,
    `| one guest kernel, two host netns on a veth: plain (ceiling) | ${fmt(r.oneKernel.plain)} | ${r.oneKernel.plain.map((x) => x.toFixed(2)).join(', ')} |`,
    `| one guest kernel, two host netns on a veth: kernel ipip | ${fmt(r.oneKernel.ipip)} | ${r.oneKernel.ipip.map((x) => x.toFixed(2)).join(', ')} |`,
    '',
    `kernel ipip / plain: two guests ${r.fraction.toFixed(2)}, one kernel ${r.oneKernel.fraction.toFixed(2)}`,
    "(between two guests the NIC takes TCP super-packets but has no GSO type for IP-in-IP, so ipip crosses it packet by packet;",
    ' within one kernel the veth carries IP-in-IP GSO too)',
  ].join('\n');
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const num = (name: string, dflt: number) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : dflt;
  };
  const missing = umlMissing();
  if (missing) {
    console.error(`kernel-ipip-uml: ${missing}`);
    return 2;
  }
  const r = await measureKernelIpipUml({
    seconds: num('--seconds', 5),
    repeat: num('--repeat', 3),
    log: (m) => console.error(m),
  });
  console.log(args.includes('--json') ? JSON.stringify(r, null, 2) : formatKernelIpipUml(r));
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (e) => {
      console.error(e instanceof Error ? e.message : e);
      process.exit(1);
    },
  );
}
