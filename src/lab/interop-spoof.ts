// The interop lab's spoofing checks: IP-in-IP whose inner source lies outside the sending host's slice must
// be dropped by userfan (from the kernel host) and not delivered by the kernel (to it), and what the kernel
// itself does and does not check, reported as information.
import { A_C, A_UL, B_C, B_UL, OVERLAY, UL_LEN, pollFor, sleep, type InteropLab } from './interop-lab.js';
import { fanSliceOf } from './uml-scripts.js';

const SPOOF_SRC = '250.0.99.5'; // the slice of 198.18.0.99, a host that sent nothing
const SPOOF_SRC_B = '250.0.98.5'; // what B's kernel is made to send as (198.18.0.98's slice)

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

/** A capture in B's container of UDP to `port`, read back through the guest (hostfs caches guest writes). */
export async function guestCapture(t: InteropLab, port: number): Promise<{ lines: () => Promise<string[]>; stop: () => Promise<void> }> {
  const f = `/tmp/cap-${port}.txt`;
  await t.guest.execOk(`ip netns exec c0 timeout 60 tcpdump -l -n -i eth0 udp port ${port} > ${f} 2>&1 &
echo $! > ${f}.pid
for i in $(seq 200); do grep -q 'listening on' ${f} 2>/dev/null && exit 0; sleep 0.05; done; exit 1`);
  return {
    lines: async () => (await t.guest.execOk(`cat ${f}`)).split('\n').filter((l) => /\bIP\b/.test(l)),
    stop: async () => void (await t.guest.exec(`kill $(cat ${f}.pid) 2>/dev/null; true`)),
  };
}

/** From A's namespace (a raw socket beside userfan): IP-in-IP A → B carrying UDP isrc → B's container. */
function craft(t: InteropLab, isrc: string, payload: string) {
  return t.lab.exec(t.hostA.ns, ['python3', '-c', CRAFT_PY, A_UL, B_UL, isrc, B_C, '5309', payload], { timeoutMs: 10_000 });
}

/** B's TcpExt IPReversePathFilter: packets its kernel dropped by reverse-path filtering. */
async function rpFilterDrops(t: InteropLab): Promise<number> {
  const out = await t.guest.execOk('cat /proc/net/netstat');
  const lines = out.split('\n').filter((l) => l.startsWith('TcpExt:'));
  const names = lines[0].split(/\s+/);
  const vals = lines[1].split(/\s+/);
  return Number(vals[names.indexOf('IPReversePathFilter')] ?? NaN);
}

/**
 * Three spoofed packets from A with inner source `isrc`, then markers from A's container until one reaches B's:
 * how many spoofed ones B's container got, B's reverse-path drops and what tunl0 decapsulated meanwhile.
 */
async function kernelCase(t: InteropLab, label: string, isrc: string, setup?: string): Promise<{ delivered: number; rpf: number; tunRx: number }> {
  if (setup) await t.guest.execOk(setup);
  const cap = await guestCapture(t, 5309);
  const rp0 = await rpFilterDrops(t);
  const t0 = await t.tunl0();
  for (let i = 0; i < 3; i++) await craft(t, isrc, `spoof-${label}`);
  await pollFor('marker in B', 15_000, async () => {
    await craft(t, A_C, 'marker');
    return (await cap.lines()).some((l) => l.includes(`${A_C}.`)) ? true : undefined;
  }, 200);
  const lines = await cap.lines();
  await cap.stop();
  const t1 = await t.tunl0();
  const rp1 = await rpFilterDrops(t);
  return { delivered: lines.filter((l) => l.includes(`${isrc}.`)).length, rpf: rp1 - rp0, tunRx: t1.rxPackets - t0.rxPackets };
}

/**
 * userfan drops it: B's kernel sends IP-in-IP from 198.18.0.27 whose inner source is 250.0.99.5 (not B's
 * slice 250.0.27.0/24), then a legitimate marker on the same path; once the marker is in A's container, the
 * spoofed packets (sent first) would have been too.
 */
async function fromKernelHost(t: InteropLab): Promise<void> {
  await t.step('spoofed packet from the kernel host: userfan drops it', async () => {
    const before = await t.userfanCounters();
    const cap = t.lab.spawn(t.ca.ns, ['timeout', '60', 'tcpdump', '-l', '-n', '-i', 'eth0', 'udp port 5309']);
    await cap.waitForLine(/listening on/, 10_000);
    // the address is on B's lo only while sending: a local address as inner source would be a martian at B later
    await t.guest.execOk(`ip addr add ${SPOOF_SRC_B}/32 dev lo && for i in 1 2 3; do echo spoof | socat -u STDIN UDP4-SENDTO:${A_C}:5309,bind=${SPOOF_SRC_B}; done; ip addr del ${SPOOF_SRC_B}/32 dev lo`);
    await pollFor('marker in A', 15_000, async () => {
      await t.guest.execOk(`echo marker | ip netns exec c0 socat -u STDIN UDP4-SENDTO:${A_C}:5309`);
      await sleep(100);
      return cap.lines.some((l) => l.line.includes(`${B_C}.`)) ? true : undefined;
    }, 200);
    const after = await t.userfanCounters();
    await cap.stop();
    const leaked = cap.lines.filter((l) => l.line.includes(`${SPOOF_SRC_B}.`)).length;
    const dropped = (after.drops['rx-spoofed-source'] ?? 0) - (before.drops['rx-spoofed-source'] ?? 0);
    return {
      ok: leaked === 0 && dropped >= 3,
      detail: `3 × ${B_UL}[${SPOOF_SRC_B} → ${A_C}]: ${leaked} reached A's container; userfan rx-spoofed-source +${dropped}; the marker from ${B_C} arrived`,
    };
  });
}

/**
 * The kernel does not deliver it either: A's namespace sends IP-in-IP from 198.18.0.28 whose inner source
 * is 250.0.99.5 (not A's slice), then a legitimate marker from 250.0.28.3.
 */
async function toKernelHost(t: InteropLab): Promise<void> {
  await t.step('spoofed packet to the kernel host: the kernel does not deliver it', async () => {
    const r = await kernelCase(t, 'unknown', SPOOF_SRC);
    return {
      ok: r.delivered === 0 && r.rpf >= 3 && r.tunRx >= 4,
      detail: `3 × ${A_UL}[${SPOOF_SRC} → ${B_C}]: tunl0 decapsulated them (rx +${r.tunRx} with the marker), ${r.delivered} reached B's container; ` +
        `dropped by reverse-path filtering (rp_filter=1, no route back to ${SPOOF_SRC}): TcpExt IPReversePathFilter +${r.rpf}`,
    };
  });
}

/**
 * What the kernel does NOT check (informational): with rp_filter off it delivers the same packet, and with
 * rp_filter on it delivers a source in ANOTHER remote host's slice, since all slices share tunl0.
 */
async function kernelUnchecked(t: InteropLab): Promise<void> {
  try {
    const off = await kernelCase(t, 'rpf-off', SPOOF_SRC, 'sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.tunl0.rp_filter=0');
    await t.guest.execOk('sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.tunl0.rp_filter=1');
    const third = fanSliceOf(OVERLAY, '198.18.0.26', UL_LEN);
    const thirdSrc = third.network.replace(/\.0$/, '.5');
    const other = await kernelCase(t, 'other-slice', thirdSrc, `ip route add ${third.network}/${third.prefixLen} via 198.18.0.26 dev tunl0 onlink`);
    // The same packet with one ipip device per peer (local B, remote X) and strict rp_filter on each.
    const perPeer = await kernelCase(
      t,
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
    t.info(
      'what the kernel checks',
      `ipip itself accepts any inner source from any outer source; only reverse-path filtering stands in for userfan's slice check: ` +
        `with rp_filter=0 the same spoofed packet reached B's container ${off.delivered}×; with rp_filter=1 a source in another remote host's ` +
        `slice (${thirdSrc}, routed via tunl0 to 198.18.0.26) sent from ${A_UL} reached it ${other.delivered}× (IPReversePathFilter +${other.rpf}): ` +
        `tunl0 carries every slice, so the kernel cannot tell which host may use which source (userfan drops both); ` +
        `with one ipip device per peer and rp_filter=1 that packet reached it ${perPeer.delivered}× (IPReversePathFilter +${perPeer.rpf})`,
    );
  } catch (e) {
    t.info('what the kernel checks', `could not complete: ${(e as Error).message.split('\n')[0]}`);
  }
}

export async function spoofChecks(t: InteropLab): Promise<void> {
  await fromKernelHost(t);
  await toKernelHost(t);
  await kernelUnchecked(t);
}
