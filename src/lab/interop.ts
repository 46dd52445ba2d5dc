// `npm run interop`: userfan against the real Linux ipip driver, on the wire, both ways.
//
//   host A (namespace)  198.18.0.28  userfan up -o 250.0.0.0/8 -u 198.18.0.28/16, container 250.0.28.3 on fan-250-0-28
//   host B (user-mode Linux 6.1, a real kernel with ipip.ko)  198.18.0.27, tunl0 + route 250.0.28.0/24 via
//        198.18.0.28 dev tunl0 onlink (the Fan on a kernel without fan-map), container 250.0.27.3 on fan-250-0-27
//   one underlay: a veth pair, B's end carrying the guest's NIC.
//
// Proves in both directions: ICMP echo, UDP, TCP of 16 MiB byte-exact (sha256 at both ends); that B's kernel
// decapsulated with ipip (tunl0 counters, IP-in-IP seen on the wire); and that a spoofed packet (inner source
// outside the sending host's slice) is dropped by userfan and not delivered by the kernel either (strict
// rp_filter, no route back to the claimed source). Prints one summary line last; exits 0 only if all hold.
//
// Checksum offload: a Linux sender whose ipip packets leave through a veth with TX checksum offload on hands the
// peer CHECKSUM_PARTIAL packets (and, with TSO, 64 KiB IP-in-IP super-packets): a raw socket on the other side
// then sees the inner TCP checksum unfinished. A real NIC always completes checksums and segments before the
// wire, so the lab makes the kernel host's underlay behave like a wire: `ethtool -K VETH tx off` on the veth the
// guest sends through (--keep-offload leaves it on). Measured here: the user-mode Linux guest completes inner
// checksums itself (its NIC has no encapsulation offloads), so with this peer both settings pass; the setting
// matters for a native kernel peer on the same machine (kernel ipip in one namespace, userfan in another).
// userfan's end is made a wire too: `ethtool -K VETH tx-ipxip4-segmentation off tx off` on host A's veth, as
// a NIC without IP-in-IP segmentation, so with `--send packet` (TX GSO) the kernel cuts userfan's whole
// frames into wire-sized segments with complete checksums before the guest's NIC reads them (a veth would
// carry them whole, and the guest's NIC takes at most its MTU).
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Lab } from './netns.js';
import { FanTopology, type Container, type Host } from './topology.js';
import type { ProcessHandle } from './exec.js';
import { fanSliceOf, kernelFanScript, packageRoot, parseLinkStats, startUml, umlMissing, UML_BIN, UML_INSTALL_HINT, type UmlGuest } from './uml.js';

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

export interface InteropResult {
  checks: InteropCheck[];
  ok: boolean;
  summary: string;
}

const A_UL = '198.18.0.28';
const B_UL = '198.18.0.27';
const UL_LEN = 16;
const OVERLAY = '250.0.0.0/8';
const A_C = '250.0.28.3';
const B_C = '250.0.27.3';
const SPOOF_SRC = '250.0.99.5'; // the slice of 198.18.0.99, a host that sent nothing
const SPOOF_SRC_B = '250.0.98.5'; // what B's kernel is made to send as (198.18.0.98's slice)

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a value other than undefined; bounded. */
async function pollFor<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, intervalMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() >= until) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(intervalMs);
  }
}

/**
 * Python (Debian's python3, stdlib only) that sends one IP-in-IP packet through a raw socket: outer
 * OUTER_SRC -> OUTER_DST, inner INNER_SRC -> INNER_DST UDP to PORT with PAYLOAD. For spoofing tests only.
 */
const CRAFT_PY = String.raw`
import socket, struct, sys
osrc, odst, isrc, idst, port, payload = sys.argv[1:7]
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def ip(src, dst, proto, body, ttl):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(body), 0x4242, 0, ttl, proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack('!H', csum(h)) + h[12:] + body
data = payload.encode()
udp = struct.pack('!HHHH', 40000, int(port), 8 + len(data), 0) + data
inner = ip(isrc, idst, 17, udp, 63)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(ip(osrc, odst, 4, inner, 64), (odst, 0))
`;

class Interop {
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

  constructor(private readonly opts: InteropOptions) {}

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

  async userfanCounters(): Promise<{ rx: number; tx: number; drops: Record<string, number> }> {
    const r = await this.lab.exec(this.hostA.ns, [process.execPath, join(packageRoot(), 'dist/src/main.js'), 'show', '--json'], { timeoutMs: 15_000 });
    const parsed = JSON.parse(r.stdout) as unknown;
    const rows = (Array.isArray(parsed) ? parsed : ((parsed as { fans?: unknown[]; rows?: unknown[] }).fans ?? (parsed as { rows?: unknown[] }).rows ?? [])) as {
      rxPackets: number | null;
      txPackets: number | null;
      dropsByReason?: Record<string, number>;
    }[];
    const row = rows[0];
    if (!row) throw new Error(`userfan show --json lists no fan: ${r.stdout.slice(0, 300)}`);
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
    const cli = join(packageRoot(), 'dist/src/main.js');
    if (!existsSync(cli)) throw new Error(`${cli} is missing: npm run build`);
    this.userfan = this.lab.spawn(ns, [process.execPath, cli, 'up', '-o', OVERLAY, '-u', `${A_UL}/${UL_LEN}`, ...(this.opts.userfanArgs ?? [])], { keepLines: 500 });
    const [ready] = await Promise.all([
      this.userfan.waitForLine((l) => {
        try {
          return (JSON.parse(l) as { event?: string }).event === 'ready';
        } catch {
          return false;
        }
      }, 60_000),
      this.guest.ready(90_000),
    ]);
    this.log(`userfan ready: ${ready}`);
    this.ca = await this.topo.addContainer(this.hostA, { address: A_C, waitForBridgeMs: 10_000 });
    const ko = (await this.guest.execOk('uname -r; lsmod | grep -c "^ipip "')).trim().split('\n');
    this.kernel = ko[0];
    this.log(`kernel host B: user-mode Linux ${ko[0]}, ipip loaded: ${ko[1] === '1' ? 'yes' : 'no'}; checksum offload on ${this.vethB}: ${this.opts.keepOffload ? 'left on' : 'tx off'}`);
  }

  async ping(): Promise<void> {
    await this.step('ICMP A→B', async () => {
      const r = await this.topo.ping(this.ca, B_C, { count: 3, timeoutS: 3 });
      return { ok: r.ok && r.received === 3, detail: `${A_C} → ${B_C}: ${r.received}/3 replies${r.rttMs !== undefined ? `, rtt ${r.rttMs} ms` : ''}` };
    });
    await this.step('ICMP B→A', async () => {
      const r = await this.guest.exec(`ip netns exec c0 ping -n -q -c 3 -i 0.2 -W 3 ${A_C}`, { timeoutMs: 20_000 });
      const m = /(\d+) received/.exec(r.output);
      return { ok: r.code === 0 && m?.[1] === '3', detail: `${B_C} → ${A_C}: ${m?.[1] ?? 0}/3 replies` };
    });
  }

  async udp(): Promise<void> {
    await this.step('UDP A→B', async () => {
      const token = randomBytes(600).toString('hex'); // 1200 bytes
      await this.guest.execOk(`(timeout 30 ip netns exec c0 socat -u UDP4-RECVFROM:5301,bind=${B_C} STDOUT > /tmp/udp1.txt 2>&1 &) ; for i in $(seq 100); do ip netns exec c0 ss -lun | grep -q ':5301 ' && exit 0; sleep 0.05; done; exit 1`);
      const got = await pollFor('datagram at B', 15_000, async () => {
        await this.lab.exec(this.ca.ns, ['sh', '-c', `printf %s "$0" | socat -u STDIN UDP4-SENDTO:${B_C}:5301`, token]);
        const s = (await this.guest.execOk('cat /tmp/udp1.txt')).trim();
        return s ? s : undefined;
      }, 300);
      return { ok: got === token, detail: `1200-byte datagram ${got === token ? 'arrived intact' : `arrived different (${got.length} bytes)`}` };
    });
    await this.step('UDP B→A', async () => {
      const token = randomBytes(600).toString('hex');
      const out = join(this.work, 'udp-at-A.txt');
      const rx = this.lab.spawn(this.ca.ns, ['timeout', '30', 'socat', '-u', `UDP4-RECVFROM:5302,bind=${A_C}`, `OPEN:${out},creat,trunc`]);
      await pollFor('UDP listener in A', 5000, async () => {
        const r = await this.lab.exec(this.ca.ns, ['ss', '-lun']);
        return r.stdout.includes(':5302 ') ? true : undefined;
      }, 50);
      const line = await pollFor('datagram at A', 15_000, async () => {
        if (rx.running) {
          await this.guest.execOk(`printf %s ${token} | ip netns exec c0 socat -u STDIN UDP4-SENDTO:${A_C}:5302`);
          await Promise.race([rx.exited, sleep(300)]);
        }
        return rx.running ? undefined : existsSync(out) ? readFileSync(out, 'utf8') : '';
      }, 0);
      return { ok: line === token, detail: `1200-byte datagram ${line === token ? 'arrived intact' : `arrived different (${line.length} bytes)`}` };
    });
  }

  async tcp(): Promise<void> {
    const bytes = this.opts.tcpBytes ?? 16 * 1024 * 1024;
    const data = randomBytes(bytes);
    const sha = createHash('sha256').update(data).digest('hex');
    const file = join(this.work, 'data.bin');
    writeFileSync(file, data);
    const mib = (bytes / 1048576).toFixed(0);
    await this.step(`TCP ${mib} MiB A→B`, async () => {
      await this.guest.execOk(
        `(timeout 120 ip netns exec c0 socat -u TCP4-LISTEN:5401,bind=${B_C},reuseaddr OPEN:/tmp/rx.bin,creat,trunc; sha256sum /tmp/rx.bin > /tmp/rx.sha.tmp; stat -c %s /tmp/rx.bin >> /tmp/rx.sha.tmp; mv /tmp/rx.sha.tmp /tmp/rx.sha) > /tmp/tcp1.log 2>&1 &
for i in $(seq 100); do ip netns exec c0 ss -ltn | grep -q ':5401 ' && exit 0; sleep 0.05; done; exit 1`,
      );
      const t0 = Date.now();
      await this.lab.exec(this.ca.ns, ['socat', '-u', `OPEN:${file}`, `TCP4:${B_C}:5401,connect-timeout=5`], { timeoutMs: 120_000 });
      const out = await pollFor('sha256 at B', 60_000, async () => {
        const r = await this.guest.exec('cat /tmp/rx.sha 2>/dev/null');
        return r.code === 0 && r.output.trim() ? r.output.trim() : undefined;
      }, 200);
      const secs = (Date.now() - t0) / 1000;
      const [shaLine, size] = out.split('\n');
      const got = shaLine.split(/\s+/)[0];
      return { ok: got === sha && Number(size) === bytes, detail: `${size} bytes, sha256 ${got.slice(0, 16)}… ${got === sha ? '=' : '≠'} sent ${sha.slice(0, 16)}… (in ${secs.toFixed(1)} s)` };
    });
    await this.step(`TCP ${mib} MiB B→A`, async () => {
      const out = join(this.work, 'rx-at-A.bin');
      const rx = this.lab.spawn(this.ca.ns, ['timeout', '120', 'socat', '-u', `TCP4-LISTEN:5402,bind=${A_C},reuseaddr`, `OPEN:${out},creat,trunc`]);
      await pollFor('TCP listener in A', 5000, async () => {
        const r = await this.lab.exec(this.ca.ns, ['ss', '-ltn']);
        return r.stdout.includes(':5402 ') ? true : undefined;
      }, 50);
      const t0 = Date.now();
      await this.guest.execOk(`ip netns exec c0 socat -u OPEN:${file} TCP4:${A_C}:5402,connect-timeout=5`, { timeoutMs: 120_000 });
      await rx.wait(60_000);
      const secs = (Date.now() - t0) / 1000;
      const got = existsSync(out) ? readFileSync(out) : Buffer.alloc(0);
      const gsha = createHash('sha256').update(got).digest('hex');
      rmSync(out, { force: true });
      return { ok: gsha === sha && got.length === bytes, detail: `${got.length} bytes, sha256 ${gsha.slice(0, 16)}… ${gsha === sha ? '=' : '≠'} sent ${sha.slice(0, 16)}… (in ${secs.toFixed(1)} s)` };
    });
    rmSync(file, { force: true });
  }

  /** A capture in B's container of UDP to `port`, read back through the guest (hostfs caches guest writes). */
  async guestCapture(port: number): Promise<{ lines: () => Promise<string[]>; stop: () => Promise<void> }> {
    const f = `/tmp/cap-${port}.txt`;
    await this.guest.execOk(`ip netns exec c0 timeout 60 tcpdump -l -n -i eth0 udp port ${port} > ${f} 2>&1 &
echo $! > ${f}.pid
for i in $(seq 200); do grep -q 'listening on' ${f} 2>/dev/null && exit 0; sleep 0.05; done; exit 1`);
    return {
      lines: async () => (await this.guest.execOk(`cat ${f}`)).split('\n').filter((l) => /\bIP\b/.test(l)),
      stop: async () => void (await this.guest.exec(`kill $(cat ${f}.pid) 2>/dev/null; true`)),
    };
  }

  async spoof(): Promise<void> {
    // 1. userfan drops it: B's kernel sends IP-in-IP from 198.18.0.27 whose inner source is 250.0.99.5 (not B's
    //    slice 250.0.27.0/24), then a legitimate marker on the same path; once the marker is in A's container,
    //    the spoofed packets (sent first) would have been too.
    await this.step('spoofed packet from the kernel host: userfan drops it', async () => {
      const before = await this.userfanCounters();
      const cap = this.lab.spawn(this.ca.ns, ['timeout', '60', 'tcpdump', '-l', '-n', '-i', 'eth0', 'udp port 5309']);
      await cap.waitForLine(/listening on/, 10_000);
      // the address is on B's lo only while sending: a local address as inner source would be a martian at B later
      await this.guest.execOk(`ip addr add ${SPOOF_SRC_B}/32 dev lo && for i in 1 2 3; do echo spoof | socat -u STDIN UDP4-SENDTO:${A_C}:5309,bind=${SPOOF_SRC_B}; done; ip addr del ${SPOOF_SRC_B}/32 dev lo`);
      await pollFor('marker in A', 15_000, async () => {
        await this.guest.execOk(`echo marker | ip netns exec c0 socat -u STDIN UDP4-SENDTO:${A_C}:5309`);
        await sleep(100);
        return cap.lines.some((l) => l.line.includes(`${B_C}.`)) ? true : undefined;
      }, 200);
      const after = await this.userfanCounters();
      await cap.stop();
      const leaked = cap.lines.filter((l) => l.line.includes(`${SPOOF_SRC_B}.`)).length;
      const dropped = (after.drops['rx-spoofed-source'] ?? 0) - (before.drops['rx-spoofed-source'] ?? 0);
      return {
        ok: leaked === 0 && dropped >= 3,
        detail: `3 × ${B_UL}[${SPOOF_SRC_B} → ${A_C}]: ${leaked} reached A's container; userfan rx-spoofed-source +${dropped}; the marker from ${B_C} arrived`,
      };
    });

    // 2. the kernel does not deliver it either: A's namespace sends (raw socket, beside userfan) IP-in-IP from
    //    198.18.0.28 whose inner source is 250.0.99.5 (not A's slice), then a legitimate marker from 250.0.28.3.
    const craft = async (isrc: string, payload: string) =>
      this.lab.exec(this.hostA.ns, ['python3', '-c', CRAFT_PY, A_UL, B_UL, isrc, B_C, '5309', payload], { timeoutMs: 10_000 });
    const netstat = async (): Promise<number> => {
      const out = await this.guest.execOk('cat /proc/net/netstat');
      const lines = out.split('\n').filter((l) => l.startsWith('TcpExt:'));
      const names = lines[0].split(/\s+/);
      const vals = lines[1].split(/\s+/);
      return Number(vals[names.indexOf('IPReversePathFilter')] ?? NaN);
    };
    const kernelCase = async (label: string, isrc: string, setup?: string) => {
      if (setup) await this.guest.execOk(setup);
      const cap = await this.guestCapture(5309);
      const rp0 = await netstat();
      const t0 = await this.tunl0();
      for (let i = 0; i < 3; i++) await craft(isrc, `spoof-${label}`);
      await pollFor('marker in B', 15_000, async () => {
        await craft(A_C, 'marker');
        return (await cap.lines()).some((l) => l.includes(`${A_C}.`)) ? true : undefined;
      }, 200);
      const lines = await cap.lines();
      await cap.stop();
      const t1 = await this.tunl0();
      const rp1 = await netstat();
      return { delivered: lines.filter((l) => l.includes(`${isrc}.`)).length, rpf: rp1 - rp0, tunRx: t1.rxPackets - t0.rxPackets };
    };
    await this.step('spoofed packet to the kernel host: the kernel does not deliver it', async () => {
      const r = await kernelCase('unknown', SPOOF_SRC);
      return {
        ok: r.delivered === 0 && r.rpf >= 3 && r.tunRx >= 4,
        detail: `3 × ${A_UL}[${SPOOF_SRC} → ${B_C}]: tunl0 decapsulated them (rx +${r.tunRx} with the marker), ${r.delivered} reached B's container; ` +
          `dropped by reverse-path filtering (rp_filter=1, no route back to ${SPOOF_SRC}): TcpExt IPReversePathFilter +${r.rpf}`,
      };
    });
    // What the kernel does NOT check (informational): with rp_filter off it delivers the same packet, and with
    // rp_filter on it delivers a source in ANOTHER remote host's slice, since all slices share tunl0.
    try {
      const off = await kernelCase('rpf-off', SPOOF_SRC, 'sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.tunl0.rp_filter=0');
      await this.guest.execOk('sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.tunl0.rp_filter=1');
      const third = fanSliceOf(OVERLAY, '198.18.0.26', UL_LEN);
      const thirdSrc = third.network.replace(/\.0$/, '.5');
      const other = await kernelCase('other-slice', thirdSrc, `ip route add ${third.network}/${third.prefixLen} via 198.18.0.26 dev tunl0 onlink`);
      // The same packet with one ipip device per peer (local B, remote X) and strict rp_filter on each.
      const perPeer = await kernelCase(
        'per-peer',
        thirdSrc,
        [
          `ip link add name ipip28 type ipip local ${B_UL} remote ${A_UL}`,
          'ip link add name ipip26 type ipip local ' + B_UL + ' remote 198.18.0.26',
          'for d in ipip28 ipip26; do ip link set dev $d mtu 1480 up; sysctl -qw net.ipv4.conf.$d.rp_filter=1; done',
          `ip route replace ${fanSliceOf(OVERLAY, A_UL, UL_LEN).network}/24 dev ipip28`,
          `ip route replace ${third.network}/${third.prefixLen} dev ipip26`,
        ].join(' && '),
      );
      this.info(
        'what the kernel checks',
        `ipip itself accepts any inner source from any outer source; only reverse-path filtering stands in for userfan's slice check: ` +
          `with rp_filter=0 the same spoofed packet reached B's container ${off.delivered}×; with rp_filter=1 a source in another remote host's ` +
          `slice (${thirdSrc}, routed via tunl0 to 198.18.0.26) sent from ${A_UL} reached it ${other.delivered}× (IPReversePathFilter +${other.rpf}): ` +
          `tunl0 carries every slice, so the kernel cannot tell which host may use which source (userfan drops both); ` +
          `with one ipip device per peer and rp_filter=1 that packet reached it ${perPeer.delivered}× (IPReversePathFilter +${perPeer.rpf})`,
      );
    } catch (e) {
      this.info('what the kernel checks', `could not complete: ${(e as Error).message.split('\n')[0]}`);
    }
  }

  async run(): Promise<void> {
    await this.setup();
    const t0 = await this.tunl0();
    const u0 = await this.userfanCounters();
    // the wire, from the kernel host's end of the veth: IP-in-IP both ways during the ping (A's end would
    // not show the replies when userfan runs with --recv xdp: XDP takes them before packet taps)
    const wire = this.lab.spawn(this.nsB, ['timeout', '60', 'tcpdump', '-l', '-n', '-i', this.vethB, 'ip proto 4']);
    await wire.waitForLine(/listening on/, 10_000);
    await this.ping();
    await wire.stop();
    await this.step('IP-in-IP on the wire', async () => {
      const lines = wire.lines.filter((l) => l.stream === 'stdout').map((l) => l.line);
      const ab = lines.filter((l) => l.includes(`${A_UL} > ${B_UL}:`) && l.includes(`${A_C} > ${B_C}: ICMP echo request`)).length;
      const ba = lines.filter((l) => l.includes(`${B_UL} > ${A_UL}:`) && l.includes(`${B_C} > ${A_C}: ICMP echo reply`)).length;
      return { ok: ab >= 3 && ba >= 3, detail: `on ${this.vethB}: ${ab} requests ${A_UL}→${B_UL} and ${ba} replies ${B_UL}→${A_UL} as IPv4 protocol 4` };
    });
    await this.udp();
    await this.tcp();
    if ((this.opts.userfanArgs ?? []).join(' ').includes('--send packet')) {
      await this.step('TX GSO', async () => {
        const cli = join(packageRoot(), 'dist/src/main.js');
        const r = await this.lab.exec(this.hostA.ns, [process.execPath, cli, 'stats', '--json', '--interval', '100'], { timeoutMs: 15_000 });
        const st = (JSON.parse(r.stdout) as { txGso?: string; total: { txGsoFrames: number } }[])[0];
        return { ok: !!st.txGso?.startsWith('on') && st.total.txGsoFrames > 0, detail: `TX GSO ${st.txGso}: ${st.total.txGsoFrames} super-packets left whole; the kernel cut them at ${this.vethA}` };
      });
    }
    const t1 = await this.tunl0();
    const u1 = await this.userfanCounters();
    // packet counts are lower than bytes/MSS: GRO merges ipip-decapsulated TCP segments; bytes are exact enough
    const tcpBytes = this.opts.tcpBytes ?? 16 * 1024 * 1024;
    this.check(
      'kernel ipip counters',
      t1.rxBytes - t0.rxBytes >= tcpBytes && t1.txBytes - t0.txBytes >= tcpBytes && t1.rxErrors === 0,
      `B's tunl0 decapsulated ${t1.rxPackets - t0.rxPackets} packets (${((t1.rxBytes - t0.rxBytes) / 1048576).toFixed(1)} MiB) and encapsulated ` +
        `${t1.txPackets - t0.txPackets} (${((t1.txBytes - t0.txBytes) / 1048576).toFixed(1)} MiB), rx errors ${t1.rxErrors}; userfan rx +${u1.rx - u0.rx}, tx +${u1.tx - u0.tx}`,
    );
    await this.spoof();
    await this.step('userfan stops cleanly', async () => {
      await this.userfan!.stop(10_000);
      const code = this.userfan!.exitCode;
      const br = await this.lab.exec(this.hostA.ns, ['ip', 'link', 'show', 'dev', this.hostA.slice.bridge], { allowFail: true });
      return { ok: code === 0 && br.code !== 0, detail: `SIGTERM: exit ${code}, bridge ${this.hostA.slice.bridge} ${br.code !== 0 ? 'removed' : 'still there'}` };
    });
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

export function summarize(checks: InteropCheck[], kernel = '6.1'): string {
  const real = checks.filter((c) => !c.info);
  const failed = real.filter((c) => !c.ok);
  const ok = failed.length === 0 && real.length > 0;
  const names = (cs: InteropCheck[]) => cs.map((c) => c.name).join(', ');
  return ok
    ? `interop: PASS ${real.length}/${real.length} — userfan ⇄ Linux ${kernel} kernel ipip (user-mode Linux): ICMP, UDP, TCP 16 MiB byte-exact both ways; tunl0 decapsulated; spoofed (inner source outside the sender's slice) dropped by both`
    : `interop: FAIL ${failed.length}/${real.length} — failed: ${names(failed)}`;
}

export async function runInterop(opts: InteropOptions = {}): Promise<InteropResult> {
  const it = new Interop(opts);
  try {
    await it.run();
  } catch (e) {
    it.check('lab', false, (e as Error).message.split('\n').slice(0, 12).join(' | '));
    if (it.userfan) opts.log?.(`userfan output (tail):\n${it.userfan.tail(15)}`);
  } finally {
    await it.destroy();
  }
  const real = it.checks.filter((c) => !c.info);
  const ok = real.length > 0 && real.every((c) => c.ok);
  return { checks: it.checks, ok, summary: summarize(it.checks, it.kernel) };
}

let interrupted: string | undefined;

async function main(): Promise<number> {
  const missing = umlMissing();
  if (missing) {
    console.error(`interop needs user-mode Linux (a real kernel with ipip; this kernel has none): ${missing}`);
    const cannotBoot = existsSync(UML_BIN) && missing.includes('cannot run a program');
    if (!cannotBoot) console.error(`install it with: ${UML_INSTALL_HINT}`);
    console.log(`interop: NOT RUN — ${cannotBoot ? 'user-mode Linux cannot run on this CPU' : 'user-mode-linux is missing'}`);
    return 2;
  }
  const args = process.argv.slice(2);
  // The lab's own SIGINT/SIGTERM hooks tear everything down and exit; say so instead of a misleading summary.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      interrupted = sig;
      process.once('exit', () => console.log(`interop: INTERRUPTED by ${sig} — lab torn down, nothing proven`));
    });
  }
  const recv = args.indexOf('--recv');
  const send = args.indexOf('--send');
  const r = await runInterop({
    keepOffload: args.includes('--keep-offload'),
    userfanArgs: [...(recv >= 0 ? ['--recv', args[recv + 1] ?? ''] : []), ...(send >= 0 ? ['--send', args[send + 1] ?? ''] : [])],
    log: (m) => console.log(m),
  });
  if (interrupted) return 130;
  if (args.includes('--json')) console.log(JSON.stringify(r.checks));
  console.log(r.summary);
  return r.ok ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (e) => {
      console.error(e instanceof Error ? e.stack : e);
      console.log('interop: FAIL — ' + (e instanceof Error ? e.message.split('\n')[0] : String(e)));
      process.exit(1);
    },
  );
}
