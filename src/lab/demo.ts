/**
 * `userfan demo` (`npm start`, as root): the Fan's seed demo on one machine. Two hosts and a container on each
 * in network namespaces (addresses from LAB.md), userfan up on both, then proof that container 250.0.28.3
 * reaches 250.0.27.3: an ICMP echo, the outer packet as tshark sees it on the underlay, and a 100 MB TCP
 * transfer whose SHA-256 matches at both ends. Everything is torn down afterwards (--keep: after Ctrl-C).
 */
import { existsSync } from 'node:fs';
import { parseIPv4 } from '../fan/addr.js';
import { parseFan } from '../fan/parse.js';
import { explainAddress } from '../debug/explain.js';
import { run } from './exec.js';
import { intOption, opts } from '../cli/options.js';
import { hasNetAdmin } from '../control/privileges.js';
import { ConfigError } from '../fan/errors.js';
import { createUserfanLab, type UserfanLab } from './userfan-lab.js';

export interface DemoOptions {
  keep: boolean;
  json: boolean;
  bytes: number;
  /** The fan's wire type: IP-in-IP (default) or VXLAN (bridge fan-250 with slice.1/8, UDP 8472). */
  type?: 'ipip' | 'vxlan';
}

/** What differs between the two types in the demo: how up is called, where containers go, what tshark sees. */
const TYPES = {
  ipip: { upArgs: [] as string[], container: undefined, filter: 'ip proto 4', decode: [] as string[], wire: 'protocol 4' },
  vxlan: {
    upArgs: ['--type', 'vxlan'], container: { bridge: 'fan-250', prefixLen: 8 }, filter: 'udp port 8472', decode: ['-d', 'udp.port==8472,vxlan'],
    wire: 'UDP 8472, VXLAN VNI 16384000',
  },
};

export interface DemoSummary {
  ok: boolean;
  rttMs: number | null;
  bytes: number;
  sha256Match: boolean;
  gbps: number | null;
  outerSeen?: string[];
  error?: string;
}

async function kernelHasIpip(): Promise<boolean> {
  if (existsSync('/sys/module/ipip')) return true;
  const r = await run(['modprobe', '-n', 'ipip'], { allowFail: true }).catch(() => ({ code: 1 }));
  return r.code === 0;
}

export async function demo(o: DemoOptions): Promise<number> {
  const say = (s = '') => {
    if (!o.json) console.log(s);
  };
  const summary: DemoSummary = { ok: false, rttMs: null, bytes: o.bytes, sha256Match: false, gbps: null };
  say('userfan demo: the Fan between two hosts, in network namespaces on this machine\n');
  say(`kernel ipip module: ${(await kernelHasIpip()) ? 'present (userfan does not need it)' : 'absent on this kernel, so the kernel Fan cannot run here; userfan is the data plane'}`);
  let lab: UserfanLab | undefined;
  try {
    const type = TYPES[o.type ?? 'ipip'];
    lab = await createUserfanLab({ workers: 1, upArgs: type.upArgs, container: type.container });
    const [A, B] = lab.hosts;
    const [[a], [b]] = lab.containers;
    say('\n1. The mapping: 250.0.0.0/8 over 198.18.0.0/16, each host owns a /24 computed from its address');
    const upText = type.upArgs.length ? ` ${type.upArgs.join(' ')}` : '';
    const bridge = (h: typeof A) => (type.container ? `${type.container.bridge} (${h.slice.gateway}/8)` : `${h.slice.bridge} (${h.slice.gateway})`);
    for (const h of [A, B]) say(`   host ${h.name} ${h.underlay} owns ${h.slice.cidr} on bridge ${bridge(h)}; userfan up -o ${h.slice.overlay} -u ${h.underlayCidr}${upText}`);
    say(`   containers: ${a.address} on host A, ${b.address} on host B`);
    const e = explainAddress(parseFan(A.slice.overlay, A.underlayCidr, {}, () => []), parseIPv4(b.address), b.address);
    say(`   a packet for ${b.address}: owner ${e.underlayHost}, so it leaves A as IPv4 ${e.outer!.source} > ${e.outer!.destination} ${type.wire}`);

    say(`\n2. ICMP echo ${a.address} -> ${b.address}`);
    const capture = lab.topo.spawn(B, [
      'timeout', '15', 'tshark', '-l', '-n', '-i', B.underlayIf, '-c', '2', '-f', `${type.filter} and not arp and greater 90`, ...type.decode,
      '-Y', 'icmp', '-T', 'fields', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'ip.proto', '-e', 'icmp.type',
    ]);
    // tshark says "Capturing on ..." on stderr when it is listening.
    await capture.waitForLine(/Capturing on/, 10_000).catch(() => undefined);
    const ping = await lab.topo.ping(a, b.address, { count: 3 });
    if (!ping.ok) throw new Error(`ping failed:\n${ping.output}`);
    summary.rttMs = ping.rttMs ?? null;
    say(`   ${ping.received}/3 replies, average round trip ${ping.rttMs?.toFixed(3)} ms`);
    await capture.wait(10_000).catch(() => undefined);
    const kind = type;
    const seen = capture.lines.map((l) => l.line).filter((l) => /^\d+\.\d+\.\d+\.\d+,/.test(l));
    summary.outerSeen = seen;
    if (seen.length) {
      say(`   on B's underlay interface ${B.underlayIf}, tshark saw:`);
      for (const l of seen) {
        const [src, dst, , icmp] = l.split('\t');
        const [os, is] = src.split(',');
        const [od, id] = dst.split(',');
        say(`     outer ${os} > ${od} ${kind.wire} | inner ${is} > ${id} ICMP ${icmp === '8' ? 'echo request' : icmp === '0' ? 'echo reply' : `type ${icmp}`}`);
      }
    }

    say(`\n3. TCP: ${(o.bytes / 1e6).toFixed(0)} MB from ${a.address} to ${b.address}, SHA-256 at both ends`);
    const t = await lab.transfer(a, b, o.bytes, { deadlineMs: 120_000 });
    summary.sha256Match = t.match;
    summary.gbps = t.sent.gbps ?? null;
    say(`   sent     ${t.sent.bytes} bytes  sha256 ${t.sent.sha256}`);
    say(`   received ${t.received.bytes} bytes  sha256 ${t.received.sha256}`);
    say(`   ${t.match ? 'match' : 'MISMATCH'}; ${(t.sent.gbps ?? 0).toFixed(2)} Gbit/s (one worker per host; both hosts share this machine's cores; a Node sender and receiver hashing every byte: for throughput, npm run bench uses iperf3)`);

    const rows = await lab.show(A);
    say(`\n4. userfan show on host A: ${rows[0].txPackets} packets encapsulated, ${rows[0].rxPackets} decapsulated, ${rows[0].drops} dropped`);
    // The default --send gso: TCP super-packets leave whole by MAC and the kernel cuts them (TX GSO).
    if (rows[0].txGso !== null) say(`   send ${rows[0].send}, TX GSO ${rows[0].txGso}: ${rows[0].txLinkPackets} of the ${rows[0].txPackets} left by MAC, in super-packets the kernel cut`);
    summary.ok = ping.ok && t.match;
    say(`\n${summary.ok ? 'OK' : 'FAILED'}: container ${a.address} on host A reached ${b.address} on host B through userfan (ICMP and ${(o.bytes / 1e6).toFixed(0)} MB of TCP, byte-exact).`);

    if (o.keep) {
      say('\nThe lab stays up until Ctrl-C. Try:');
      say(`  ip netns exec ${a.ns} ping ${b.address}`);
      say(`  ip netns exec ${A.ns} node ${process.argv[1]} show`);
      say(`  ip netns exec ${B.ns} tshark -i ${B.underlayIf} -f '${type.filter}'`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
    }
  } catch (err) {
    summary.error = (err as Error).message;
    say(`\nFAILED: ${summary.error}`);
  } finally {
    say('\nTearing down the lab…');
    await lab?.destroy();
  }
  if (o.json) console.log(JSON.stringify(summary));
  return summary.ok ? 0 : 1;
}

/** `userfan demo [--keep] [--json] [--bytes N] [--type ipip|vxlan]` (wired in by src/main.ts: the product's CLI does not import the lab). */
export async function demoCommand(args: string[]): Promise<number> {
  const { values } = opts(args, { keep: { type: 'boolean' }, json: { type: 'boolean' }, bytes: { type: 'string' }, type: { type: 'string' } });
  if (values.type !== undefined && values.type !== 'ipip' && values.type !== 'vxlan') throw new ConfigError('--type', values.type, 'must be ipip or vxlan');
  if (!hasNetAdmin()) throw new ConfigError('demo', 'userfan demo', 'builds network namespaces: run as root (npm start as root)');
  return demo({ keep: !!values.keep, json: !!values.json, bytes: intOption('--bytes', values.bytes, 100_000_000, 1, 2 ** 40), type: values.type as 'ipip' | 'vxlan' | undefined });
}
