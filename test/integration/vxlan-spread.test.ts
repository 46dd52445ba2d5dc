/**
 * Many flows over the VXLAN type (root, namespace lab), two workers per host. As the kernel's vxlan does,
 * userfan sets each datagram's outer UDP source port from its inner flow: on the wire every TCP flow's
 * datagrams carry one port of 32768-60999, and the flows different ones (destination 8472 throughout;
 * one datagram a second per neighbour, the neighbour copy's probe through the kernel, from 8472).
 * The receiver's SO_REUSEPORT sockets, one per worker, are chosen by the outer 4-tuple, so the flows
 * arrive spread over both workers, the data on B and the ACKs on A (with one fixed source port every
 * datagram between two hosts went to one socket, one worker).
 */
import { describe, expect, it } from 'vitest';
import { createFanTopology, type FanTopology, type Host } from '../../src/lab/topology.js';
import { startDaemon, UserfanLab } from '../../src/lab/userfan-lab.js';
import { waitForValue } from '../helpers/wait.js';

const PORT = 8472;
const FLOWS = 16;
const SINK_PORT = 7300;
const CLIENT_PORT = 41000; // flow i from CLIENT_PORT + 2i (even, as Linux's connect() picks them)
const BYTES = 1 << 20;

interface Worker {
  rxPackets: number;
}
const perWorker = async (lab: UserfanLab, h: Host): Promise<number[]> =>
  (JSON.parse((await lab.cli(h, ['stats', '--json', '--interval', '100'])).stdout)[0].perWorker as Worker[]).map((w) => w.rxPackets);

/** The share of each worker in what arrived between two readings. */
const shares = (before: number[], after: number[]) => {
  const d = after.map((n, i) => n - before[i]);
  const all = d.reduce((a, b) => a + b, 0);
  return d.map((n) => n / all);
};

describe('--type vxlan: many flows between two hosts', () => {
  it('each flow has its own outer source port on the wire, and the flows arrive spread over both workers, both ways', async () => {
    const topo: FanTopology = await createFanTopology();
    let lab: UserfanLab | undefined;
    try {
      const [A, B] = topo.hosts;
      const daemons = [];
      for (const h of [A, B]) daemons.push(await startDaemon(topo, h, ['-o', h.slice.overlay, '-u', h.underlayCidr, '--workers', '2', '--type', 'vxlan']));
      const [a, b] = [await topo.addContainer(A, { bridge: 'fan-250', prefixLen: 8 }), await topo.addContainer(B, { bridge: 'fan-250', prefixLen: 8 })];
      lab = new UserfanLab(topo, daemons, [[a], [b]]);
      expect((await topo.ping(a, b.address, { count: 2 })).received).toBe(2); // ARP done, the neighbours known
      // What A sends B on the underlay: the outer source port and the inner TCP source port of each datagram.
      const cap = topo.spawn(B, [
        'timeout', '60', 'tshark', '-l', '-n', '-i', B.underlayIf, '-f', `udp dst port ${PORT} and src host ${A.underlay}`, '-d', `udp.port==${PORT},vxlan`,
        '-T', 'fields', '-E', 'separator=;', '-e', 'udp.srcport', '-e', 'udp.dstport', '-e', 'tcp.srcport', '-e', 'tcp.dstport',
      ]);
      await cap.waitForLine(/Capture started|Capturing on/, 10_000);
      const sink = topo.spawn(b, ['node', '-e', `let n=0;const s=require('net').createServer((c)=>{let k=0;c.on('data',(d)=>{k+=d.length});c.on('end',()=>{if(k===${BYTES}&&++n===${FLOWS}){console.log('all');process.exit(0)}})});` +
        `s.listen(${SINK_PORT},'${b.address}',()=>console.log('listening'));setTimeout(()=>process.exit(1),60000)`]);
      await sink.waitForLine(/^listening$/, 10_000);
      const [a0, b0] = [await perWorker(lab, A), await perWorker(lab, B)];
      const send = `const net=require('net');const buf=Buffer.alloc(${BYTES},7);for(let i=0;i<${FLOWS};i++){` +
        `const c=net.connect({host:'${b.address}',port:${SINK_PORT},localPort:${CLIENT_PORT}+2*i},()=>c.end(buf))}`;
      await topo.exec(a, ['node', '-e', send], { timeoutMs: 60_000 });
      await sink.waitForLine(/^all$/, 60_000);
      // The workers count what they wrote; wait until every flow's bytes are counted on B.
      await waitForValue('B to count the flows', () => perWorker(lab!, B), (n) => n.reduce((x, y) => x + y, 0) - b0.reduce((x, y) => x + y, 0) > FLOWS * 4);
      const [a1, b1] = [await perWorker(lab, A), await perWorker(lab, B)];
      await cap.stop();

      const portOf = new Map<string, Set<string>>();
      let probes = 0;
      for (const [sport, dport, tsport, tdport] of cap.lines.map((l) => l.line.split(';')).filter((f) => f.length === 4 && f[2] !== '')) {
        expect(dport).toBe(String(PORT));
        if (tdport !== String(SINK_PORT)) continue;
        const n = Number(sport);
        if (n === PORT) {
          probes++;
          continue;
        }
        expect(n, `outer source port ${sport}`).toBeGreaterThanOrEqual(32768);
        expect(n, `outer source port ${sport}`).toBeLessThanOrEqual(60999);
        (portOf.get(tsport) ?? portOf.set(tsport, new Set()).get(tsport)!).add(sport);
      }
      expect(portOf.size, 'flows seen on the wire').toBe(FLOWS);
      // The neighbour copy's probe (src/underlay/neighbours.ts): one datagram a second per neighbour goes
      // through the kernel, by the worker's socket, from the VXLAN port.
      expect(probes, 'datagrams from the VXLAN port').toBeLessThanOrEqual(4);
      for (const [flow, ports] of portOf) expect([...ports], `flow from inner port ${flow}: one outer source port`).toHaveLength(1);
      const distinct = new Set([...portOf.values()].map((p) => [...p][0]));
      expect(distinct.size, 'the flows\' outer source ports').toBeGreaterThanOrEqual(FLOWS - 2);

      // Both workers of each host took a share of what arrived: the data on B, the ACKs on A.
      for (const [h, s] of [['B', shares(b0, b1)], ['A', shares(a0, a1)]] as const) {
        for (const [i, x] of s.entries()) expect(x, `${h}'s worker ${i} share of the datagrams (${s.map((v) => v.toFixed(2))})`).toBeGreaterThan(0.05);
      }
    } finally {
      if (lab) await lab.destroy();
      else await topo.destroy();
    }
  }, 180_000);
});
