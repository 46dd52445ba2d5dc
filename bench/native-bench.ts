/**
 * Native I/O bench: the TypeScript worker loop (bench/native-loop.ts, through src/io and src/wire)
 * against the same loop in C (bench/loop.c), measured in one run, interleaved C TS C TS …, median
 * and range of packets per second of 1400-byte inner packets. Also: IPPROTO_IPIP vs IPPROTO_RAW for
 * sending, and the cost of spreading receives over N shared sockets.
 *
 *   npm run build && node dist/bench/native-bench.js [--rounds 5] [--seconds 3] [--only encap,decap,proto,share,txring]
 *     [--share-rate 100000] [--decap-rate 0]
 *   (proto also sends the same packets from C through a raw socket and through AF_PACKET with
 *   PACKET_QDISC_BYPASS: what a packet-socket TX path would save)
 *   (txring, not run by default: AF_PACKET sendmmsg, as userfan's TX GSO sends its whole frames, against
 *   the same socket with a PACKET_TX_RING, both through the qdisc)
 *
 * decap cannot saturate the loop here: one generator core also carries the kernel's receive work
 * (~5 µs per packet, the loop needs ~3), so its loops run below capacity with partial batches and
 * the per-CPU-second figure is the one to compare; --decap-rate fixes the offered load so that both
 * loops see exactly the same.
 *
 * Lab (namespaces nb<pid>a, nb<pid>b, removed at the end, also on failure or Ctrl-C):
 *   A 198.18.0.28/24 ─u0── u0─ B 198.18.0.27/24
 *   A: TUN fb0 (multi-queue, persistent, MTU 1480), 250.0.0.0/8 routed into it with source
 *      250.0.28.1 (on lo); 250.0.28.99 blackholed; 198.18.0.99 a static neighbour nobody answers to.
 *   encap: a UDP blaster in A sends 1400-byte packets to 250.0.99.3 → fb0; the loop encapsulates them
 *          to 198.18.0.99 (fan 250.0.0.0/8 over 198.18.0.0/16) and B's veth drops them (not its MAC).
 *   decap: a blaster in B sends IP-in-IP 198.18.0.27 → .28 carrying 250.0.27.3 → 250.0.28.99; the loop
 *          decapsulates and writes to fb0, where A's routing drops it (blackhole).
 * So the kernel work outside the loop is as small as possible and the loop's own cost shows.
 * Generator on CPU 0, the loop on CPU 1 (taskset).
 *
 * Two figures per loop: packets per wall-clock second, and packets per CPU-second the loop process
 * used (its user + system time, all threads). On a machine shared with other work the first
 * measures the scheduler; the second is what one core would do and is the one to compare.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { link } from '../src/io/link.js';
import { inNetns } from '../src/io/netns.js';
import { TunQueue } from '../src/tun/queue.js';
import { pidAlive } from '../src/control/pid.js';
import { PACKAGE_ROOT, dist } from '../src/lab/paths.js';

const OUT = join(PACKAGE_ROOT, 'bench', 'out');
const LOOP_C = join(OUT, 'loop');
const BLAST = join(OUT, 'native-blast');
const LOOP_TS = dist('bench/native-loop');
const TUN = 'fb0';

interface Options {
  rounds: number;
  seconds: number;
  only: Set<string>;
  /** Offered packets per second in the receive-spread comparison. */
  shareRate: number;
  /** Offered packets per second for the decap loops (0: as fast as the generator goes). */
  decapRate: number;
}

const SCENARIOS = ['encap', 'decap', 'proto', 'share', 'txring'];

function parseArgs(argv: string[]): Options {
  const o: Options = { rounds: 5, seconds: 3, only: new Set(['encap', 'decap', 'proto', 'share']), shareRate: 100_000, decapRate: 0 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--rounds') o.rounds = Number(argv[++i]);
    else if (a === '--seconds') o.seconds = Number(argv[++i]);
    else if (a === '--only') o.only = new Set(argv[++i].split(','));
    else if (a === '--share-rate') o.shareRate = Number(argv[++i]);
    else if (a === '--decap-rate') o.decapRate = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  for (const x of o.only) if (!SCENARIOS.includes(x)) throw new Error(`--only ${x}: one of ${SCENARIOS.join(', ')}`);
  if (!(o.rounds >= 1 && o.rounds <= 50) || !(o.seconds > 0 && o.seconds <= 60)) throw new Error('bad --rounds/--seconds');
  return o;
}

function run(cmd: string, args: string[], timeoutMs = 20_000): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs a command to completion (bounded) and returns its last stdout line parsed as JSON. */
function runJson(cmd: string, args: string[], timeoutMs: number): Promise<Record<string, any>> {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').at(-1) ?? '';
      try {
        if (code !== 0) throw new Error(`exit ${code}`);
        res(JSON.parse(line));
      } catch (e) {
        rej(new Error(`${cmd} ${args.join(' ')}: ${(e as Error).message}\n${err}${out}`));
      }
    });
  });
}

// ---------- lab ----------

const prefix = `nb${process.pid}`;
const NS_A = `${prefix}a`;
const NS_B = `${prefix}b`;
const made: string[] = [];

function removeStale(): void {
  for (const line of run('ip', ['netns', 'list']).split('\n')) {
    const name = line.split(' ')[0];
    const m = /^nb(\d+)[ab]$/.exec(name);
    if (m && !pidAlive(Number(m[1]))) run('ip', ['netns', 'del', name]);
  }
}

function ns(name: string): void {
  run('ip', ['netns', 'add', name]);
  made.push(name);
  run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  run('ip', ['netns', 'exec', name, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
}

function buildLab(): void {
  removeStale();
  ns(NS_A);
  ns(NS_B);
  const ipA = (...a: string[]) => run('ip', ['-n', NS_A, ...a]);
  ipA('link', 'add', 'name', 'u0', 'type', 'veth', 'peer', 'name', 'u0', 'netns', NS_B);
  ipA('addr', 'add', '198.18.0.28/24', 'dev', 'u0');
  run('ip', ['-n', NS_B, 'addr', 'add', '198.18.0.27/24', 'dev', 'u0']);
  ipA('link', 'set', 'u0', 'up');
  run('ip', ['-n', NS_B, 'link', 'set', 'u0', 'up']);
  ipA('addr', 'add', '250.0.28.1/32', 'dev', 'lo');
  inNetns(NS_A, () => {
    const q = TunQueue.open(TUN, { multiQueue: true, persist: true });
    q.close();
    link.setMtu(TUN, 1480);
    link.setTxQueueLength(TUN, 4096);
    link.setUp(TUN);
  });
  ipA('route', 'add', '250.0.0.0/8', 'dev', TUN, 'src', '250.0.28.1');
  ipA('route', 'add', 'blackhole', '250.0.28.99/32');
  ipA('neigh', 'add', '198.18.0.99', 'lladdr', '02:00:00:00:00:99', 'dev', 'u0', 'nud', 'permanent');
}

function destroyLab(): void {
  try {
    if (made.includes(NS_A)) inNetns(NS_A, () => TunQueue.remove(TUN, { multiQueue: true }));
  } catch {
    /* the namespace goes anyway */
  }
  for (const name of made.splice(0)) {
    try {
      run('ip', ['netns', 'del', name]);
    } catch {
      /* gone */
    }
  }
}

function compile(): void {
  mkdirSync(OUT, { recursive: true });
  for (const [src, bin] of [['loop.c', LOOP_C], ['native-blast.c', BLAST]]) {
    run('gcc', ['-O2', '-Wall', '-o', bin, join(PACKAGE_ROOT, 'bench', src)], 60_000);
  }
  if (!existsSync(LOOP_TS)) throw new Error(`${LOOP_TS} missing: run npm run build`);
}

// ---------- statistics ----------

/** Jiffies of one CPU from /proc/stat: [busy (user+system+irq+softirq), softirq, total]. */
function cpuTimes(cpu: number): [number, number, number] {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `))!;
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return [user + nice + system + irq + softirq, softirq, user + nice + system + idle + iowait + irq + softirq + steal];
}

/** Runs a loop, recording how busy the loop's CPU was (its share, and softirq's) meanwhile. */
async function measured(cmd: string, args: string[], timeoutMs: number, cpu = 1): Promise<Record<string, any>> {
  const a = cpuTimes(cpu);
  const r = await runJson(cmd, args, timeoutMs);
  const b = cpuTimes(cpu);
  const total = Math.max(b[2] - a[2], 1);
  r.cpuBusy = (b[0] - a[0]) / total;
  r.cpuSoftirq = (b[1] - a[1]) / total;
  return r;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const kpps = (r: Record<string, any>): number => r.packets / r.seconds / 1000;
const kppsPerCpu = (r: Record<string, any>): number => r.packets / Math.max(r.cpuSeconds, 1e-6) / 1000;
const fmt = (x: number): string => x.toFixed(1);
const range = (xs: number[]): string => `${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}`;

function summarize(label: string, runs: Record<string, any>[]): { kpps: number } {
  const k = runs.map(kpps);
  const c = runs.map(kppsPerCpu);
  const drops = runs.reduce((s, r) => s + r.drops + r.sendErrors, 0);
  const busy = runs.filter((r) => r.cpuBusy !== undefined);
  const load = busy.length
    ? `, CPU 1 busy ${(median(busy.map((r) => r.cpuBusy)) * 100).toFixed(0)}% (softirq ${(median(busy.map((r) => r.cpuSoftirq)) * 100).toFixed(0)}%)`
    : '';
  const withBatches = runs.filter((r) => r.batches);
  const perBatch = withBatches.length ? `, ${fmt(median(withBatches.map((r) => r.packets / r.batches)))} packets/batch` : '';
  console.log(`  ${label.padEnd(22)} ${fmt(median(k)).padStart(7)} kpps  [${range(k)}]   ${fmt(median(c)).padStart(7)} kpps per CPU-second of the process${load}${perBatch}  (drops+errors ${drops})`);
  return { kpps: median(k) };
}

// ---------- scenarios ----------

const inA = (cpu: number, cmd: string, ...args: string[]): [string, string[]] =>
  ['ip', ['netns', 'exec', NS_A, 'taskset', '-c', String(cpu), cmd, ...args]];
const inB = (cpu: number, cmd: string, ...args: string[]): [string, string[]] =>
  ['ip', ['netns', 'exec', NS_B, 'taskset', '-c', String(cpu), cmd, ...args]];

/** Runs C and TS loops alternately while a generator runs; prints and returns the medians. */
async function loopVsC(mode: 'encap' | 'decap', o: Options): Promise<void> {
  const genSeconds = o.rounds * 2 * (o.seconds + 2.5) + 3; // each loop: 1 s warm-up + start-up
  const gen = mode === 'encap'
    ? inA(0, BLAST, 'udp', '250.0.99.3', '9', '1400', String(genSeconds), '8')
    : inB(0, BLAST, 'ipip', '198.18.0.27', '198.18.0.28', '250.0.27.3', '250.0.28.99', '1420', String(genSeconds), '8', String(o.decapRate));
  const generator = runJson(gen[0], gen[1], (genSeconds + 10) * 1000);
  await new Promise((r) => setTimeout(r, 500));
  const c: Record<string, any>[] = [];
  const ts: Record<string, any>[] = [];
  try {
    for (let i = 0; i < o.rounds; i++) {
      const [cc, ca] = inA(1, LOOP_C, mode, TUN, String(o.seconds), '64');
      c.push(await measured(cc, ca, (o.seconds + 10) * 1000));
      const [tc, ta] = inA(1, process.execPath, LOOP_TS, mode, TUN, String(o.seconds), '64');
      ts.push(await measured(tc, ta, (o.seconds + 15) * 1000));
    }
  } finally {
    const g = await generator.catch((e) => ({ error: String(e) }));
    console.log(`${mode}: ${mode === 'encap' ? 'TUN read → encapsulate → sendmmsg' : 'recvmmsg → decapsulate → TUN write'}, 1400-byte inner packets, batch 64, ${o.rounds}×${o.seconds}s each, interleaved`);
    if ('sent' in g) console.log(`  generator: ${fmt(g.sent / g.seconds / 1000)} kpps offered`);
  }
  const rc = summarize('C (bench/loop.c)', c);
  const rt = summarize('TypeScript', ts);
  const rcCpu = median(c.map(kppsPerCpu));
  const rtCpu = median(ts.map(kppsPerCpu));
  console.log(`  TS/C: ${(rt.kpps / rc.kpps).toFixed(3)} of the packet rate, ${(rtCpu / rcCpu).toFixed(3)} per CPU-second`);
}

async function protoCompare(o: Options): Promise<void> {
  const runs: Record<string, Record<string, any>[]> = { 4: [], 255: [] };
  for (let i = 0; i < o.rounds; i++) {
    for (const p of ['4', '255']) {
      const [cmd, args] = inA(1, process.execPath, LOOP_TS, 'send', p, String(o.seconds), '64');
      runs[p].push(await measured(cmd, args, (o.seconds + 15) * 1000));
    }
  }
  console.log(`send only: sendmmsg of ready 1420-byte IP-in-IP packets, batch 64, ${o.rounds}×${o.seconds}s each, interleaved`);
  summarize('IPPROTO_IPIP (4)', runs[4]);
  summarize('IPPROTO_RAW (255)', runs[255]);

  // What an AF_PACKET TX path would save: the same packets as Ethernet frames through a packet socket
  // with PACKET_QDISC_BYPASS (no route, netfilter, neighbour or qdisc per packet), from C, beside C's raw socket.
  await blastCompare(o, 'the same packets through a raw socket and through AF_PACKET', 'AF_PACKET/raw',
    ['raw socket (IPPROTO_RAW)', []], ['AF_PACKET + QDISC_BYPASS', ['BLAST_PACKET=u0,02:00:00:00:00:99']]);
}

/**
 * AF_PACKET with sendmmsg (what userfan's TX GSO does with its whole frames) against a PACKET_TX_RING on the same socket,
 * both keeping the qdisc: does the mmap TX path, which saves the kernel's copy and the per-message
 * sendmsg work, send cheaper per CPU-second? The ring needs its frames filled (the copy moves to user
 * space) and holds each until the kernel frees its skb.
 */
async function txRingCompare(o: Options): Promise<void> {
  const packet = ['BLAST_PACKET=u0,02:00:00:00:00:99', 'BLAST_QDISC=1'];
  await blastCompare(o, 'AF_PACKET through the qdisc, sendmmsg against PACKET_TX_RING', 'ring/sendmmsg',
    ['sendmmsg (batch 64)', packet], ['TX ring (64 a flush)', [...packet, 'BLAST_TXRING=1']]);
}

/**
 * The C blaster (bench/native-blast.c) sending the same 1420-byte IP-in-IP packets two ways (`env`
 * settings for each), interleaved rounds; prints both and the second's ratio to the first.
 */
async function blastCompare(o: Options, what: string, ratioLabel: string, ...ways: [label: string, env: string[]][]): Promise<void> {
  const tx: Record<string, any>[][] = ways.map(() => []);
  for (let i = 0; i < o.rounds; i++) {
    for (const [k, [, env]] of ways.entries()) {
      const [cmd, args] = inA(1, 'env', ...env, BLAST, 'ipip', '198.18.0.28', '198.18.0.99', '250.0.28.3', '250.0.99.3', '1420', String(o.seconds));
      const r = await measured(cmd, args, (o.seconds + 15) * 1000);
      r.packets = r.sent;
      r.drops = 0;
      r.sendErrors = r.errors;
      tx[k].push(r);
    }
  }
  console.log(`send only, C (bench/native-blast.c): ${what}, ${o.rounds}×${o.seconds}s each, interleaved`);
  const [a, b] = ways.map(([label], k) => summarize(label, tx[k]));
  console.log(`  ${ratioLabel}: ${(b.kpps / a.kpps).toFixed(2)} of the packet rate, ${(median(tx[1].map(kppsPerCpu)) / median(tx[0].map(kppsPerCpu))).toFixed(2)} per CPU-second`);
}

/**
 * Receive spread: at a fixed offered rate (no loss expected), the CPU cost per packet on the sending
 * side (B's blaster, whose context also runs A's receive softirq: IP input, one clone and one filter
 * run per protocol-4 socket) and on the receiving thread, for 1 socket (no filter) and 2 and 4 with
 * shares. A single receiver feeding the workers would cost the 1-socket figure plus the hand-off.
 */
async function shareCompare(o: Options): Promise<void> {
  const counts = [1, 2, 4];
  const rate = o.shareRate;
  const gens = new Map<number, Record<string, any>[]>(counts.map((n) => [n, []]));
  const recvs = new Map<number, Record<string, any>[]>(counts.map((n) => [n, []]));
  for (let i = 0; i < o.rounds; i++) {
    for (const n of counts) {
      const [cmd, args] = inA(1, process.execPath, LOOP_TS, 'receive', String(n), String(o.seconds + 1), '64');
      const r = runJson(cmd, args, (o.seconds + 15) * 1000);
      await new Promise((res) => setTimeout(res, 300)); // the receiver's sockets are open
      const gen = inB(0, BLAST, 'ipip', '198.18.0.27', '198.18.0.28', '250.0.27.3', '250.0.28.99', '1420', String(o.seconds), '8', String(rate));
      const g = await runJson(gen[0], gen[1], (o.seconds + 10) * 1000);
      gens.get(n)!.push(g);
      recvs.get(n)!.push(await r);
    }
  }
  console.log(`receive spread: IP-in-IP from B at ${rate / 1000} kpps (1420 bytes) → N protocol-4 sockets in A with shares, one thread draining them; ${o.rounds}×${o.seconds}s, interleaved`);
  for (const n of counts) {
    const g = gens.get(n)!;
    const r = recvs.get(n)!;
    const sendUs = g.map((x) => (x.cpuSeconds / x.sent) * 1e6);
    const recvUs = r.map((x) => (x.cpuSeconds / Math.max(x.packets, 1)) * 1e6);
    const loss = g.map((x, k) => 1 - r[k].packets / x.sent);
    const f2 = (x: number): string => x.toFixed(2);
    console.log(`  ${String(n).padStart(2)} socket(s): sender+softirq ${f2(median(sendUs))} µs/packet [${f2(Math.min(...sendUs))}–${f2(Math.max(...sendUs))}], receiver ${f2(median(recvUs))} µs/packet [${f2(Math.min(...recvUs))}–${f2(Math.max(...recvUs))}], lost ${(median(loss) * 100).toFixed(2)}%, per socket ${JSON.stringify(r.at(-1)!.perSocket)}`);
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('native-bench: run as root (namespaces, TUN, raw sockets)');
  const o = parseArgs(process.argv.slice(2));
  compile();
  const onSignal = (sig: NodeJS.Signals): void => {
    destroyLab();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    buildLab();
    console.log(`native-bench: ${resolve(LOOP_C)} vs ${resolve(LOOP_TS)}; ${run('nproc', []).trim()} CPUs, node ${process.version}`);
    console.log(`load average before: ${loadavg()} (anything above ~1 is other work sharing these CPUs: trust the per-CPU-second figures)`);
    if (o.only.has('encap')) await loopVsC('encap', o);
    if (o.only.has('decap')) await loopVsC('decap', o);
    if (o.only.has('proto')) await protoCompare(o);
    if (o.only.has('share')) await shareCompare(o);
    if (o.only.has('txring')) await txRingCompare(o);
    console.log(`load average after: ${loadavg()}`);
  } finally {
    destroyLab();
  }
}

const loadavg = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

main().catch((e) => {
  destroyLab();
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
