/**
 * Does the data path allocate per packet? Two hosts in namespaces, `userfan up` on each under
 * `node --trace-gc` (every collection of every isolate, workers included, prints a line), a container on
 * each, one iperf3 TCP stream for --seconds. Reports the collections per isolate while idle, during the
 * first two seconds of the stream (the JIT warming up) and after them, against the packets moved.
 * A data path that allocates per packet collects steadily: tens of scavenges a second at these rates.
 *
 *   npm run build && node dist/bench/gc.js [--seconds 20] [--offload on|off] [--workers 1] [--send raw|gso] [--type ipip|vxlan]
 */
import { createFanTopology } from '../src/lab/topology.js';
import { CLI, UserfanLab } from '../src/lab/userfan-lab.js';
import { IPERF_PORT, waitListening } from './iperf-run.js';
import { runIfMain } from './echo.js';

interface Gc {
  at: number;
  isolate: string;
  kind: string;
}

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
}

export async function main(): Promise<number> {
  const seconds = Number(arg('seconds', '20'));
  const offload = arg('offload', 'on');
  const workers = arg('workers', '1');
  const send = arg('send', 'raw');
  const vxlan = arg('type', 'ipip') === 'vxlan';
  const gcs: Gc[] = [];
  const topo = await createFanTopology();
  const lab = new UserfanLab(topo, [], []);
  try {
    const threads = new Map<string, string>();
    for (const h of topo.hosts) {
      const p = topo.spawn(h, ['node', '--trace-gc', CLI, 'up', '-o', h.slice.overlay, '-u', h.underlayCidr, '--workers', workers, '--offload', offload, '--send', send, ...(vxlan ? ['--type', 'vxlan'] : [])], {
        onLine: (line: string) => {
          const m = /^\[(\d+):(0x[0-9a-f]+)\]\s+\d+ ms: (Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Sweep|Minor Mark-Compact)/.exec(line);
          if (!m) return;
          const key = `${m[1]}:${m[2]}`;
          if (!threads.has(key)) threads.set(key, `${h.name}/${threads.size}`);
          gcs.push({ at: Date.now(), isolate: key, kind: m[3] });
        },
      });
      lab.daemons.push({ host: h, process: p });
      await p.waitForLine(/"event":"ready"/, 20_000);
    }
    // The VXLAN type's bridge holds slice.1/8: the whole overlay is one L2 segment.
    for (const h of topo.hosts) lab.containers.push([await topo.addContainer(h, vxlan ? { bridge: 'fan-250', prefixLen: 8 } : {})]);
    const [[a], [b]] = lab.containers;
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    const idle = gcs.filter((g) => g.at >= t0).length;
    const srv = topo.spawn(b, ['iperf3', '-s', '-1', '-B', b.address]);
    await waitListening(topo, b, IPERF_PORT, 10_000, srv);
    const before = (await lab.show(topo.hosts[0]))[0];
    const t1 = Date.now();
    const r = await topo.exec(a, ['iperf3', '-c', b.address, '-t', String(seconds), '-J'], { timeoutMs: (seconds + 20) * 1000 });
    const after = (await lab.show(topo.hosts[0]))[0];
    await srv.stop();
    const gbps = JSON.parse(r.stdout).end.sum_received.bits_per_second / 1e9;
    const during = gcs.filter((g) => g.at >= t1);
    const warm = during.filter((g) => g.at < t1 + 2000);
    const steady = during.filter((g) => g.at >= t1 + 2000);
    const packets = after.txPackets - before.txPackets + (after.rxPackets - before.rxPackets);
    console.log(`${vxlan ? 'VXLAN, ' : ''}offload ${offload}, ${workers} worker(s) per host: iperf3 ${seconds} s, ${gbps.toFixed(2)} Gbit/s, host A moved ${packets} packets`);
    console.log(`collections: idle 3 s ${idle}; first 2 s of the stream ${warm.length}; the other ${seconds - 2} s ${steady.length}`);
    const per = (list: Gc[]) => {
      const m = new Map<string, number>();
      for (const g of list) m.set(`${threads.get(g.isolate)} ${g.kind}`, (m.get(`${threads.get(g.isolate)} ${g.kind}`) ?? 0) + 1);
      return [...m].map(([k, v]) => `${k} ×${v}`).join(', ') || 'none';
    };
    console.log(`  warm-up: ${per(warm)}`);
    console.log(`  steady:  ${per(steady)}`);
    console.log('(isolates are named host/order of first collection; the daemon main thread runs no packets)');
  } finally {
    await lab.destroy();
  }
  return 0;
}

runIfMain(import.meta.url, main);
