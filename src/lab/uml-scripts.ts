// What runs inside a user-mode Linux guest, and reading what comes out: the shell functions every guest
// script gets (talking to the host through files), kernel ipip set up as the Fan sets up a kernel without
// fan-map, and the guest's `ip -s link` counters.
import { fanBridgeName, fanSlice, intToIp, ipToInt } from './topology.js';

/**
 * Shell functions every guest script gets (prepended to it). All talk to the host goes through files in
 * $UF_DIR, written to a temporary name, fsynced (hostfs caches in the guest), then renamed.
 *   uf_mark NAME [TEXT]   tell the host something: $UF_DIR/NAME with TEXT
 *   uf_wait NAME SECONDS  wait for the host to create $UF_DIR/NAME (status 1 after SECONDS)
 *   uf_serve [SECONDS]    run the host's commands (cmd-N.sh, in order) until the host writes `stop`;
 *                         each one's output goes to res-N.out and its status to res-N.status.
 */
export const GUEST_LIB = String.raw`
uf_mark() {
  local f="$UF_DIR/$1"; shift
  printf '%s\n' "$*" > "$f.tmp" && sync "$f.tmp" && mv "$f.tmp" "$f"
}
uf_wait() {
  local end=$((SECONDS + $2))
  while [ ! -e "$UF_DIR/$1" ]; do
    [ "$SECONDS" -ge "$end" ] && return 1
    sleep 0.05
  done
}
uf_serve() {
  local n=0 end=$((SECONDS + ${"${1:-600}"})) t rc
  uf_mark serving
  while [ "$SECONDS" -lt "$end" ]; do
    if [ -e "$UF_DIR/cmd-$n.sh" ]; then
      t=$(sed -n '1s/^#timeout=//p' "$UF_DIR/cmd-$n.sh")
      timeout -k 2 "${"${t:-60}"}" bash "$UF_DIR/cmd-$n.sh" > "$UF_DIR/res-$n.out" 2>&1 < /dev/null
      rc=$?
      sync "$UF_DIR/res-$n.out"
      uf_mark "res-$n.status" "$rc"
      n=$((n + 1))
    elif [ -e "$UF_DIR/stop" ]; then
      return 0
    else
      sleep 0.02
    fi
  done
  echo "uf_serve: the host sent no stop within ${"${1:-600}"} s" >&2
  return 1
}
`;

/** The Fan slice of an underlay host: 250.0.0.0/8 over 198.18.0.0/16, 198.18.0.27 -> 250.0.27.0/24. */
export function fanSliceOf(overlay: string, underlayHost: string, underlayLen: number): { network: string; prefixLen: number; gateway: string; bridge: string } {
  const [oNet, oLenS] = overlay.split('/');
  const { network, prefixLen } = fanSlice(oNet, Number(oLenS), underlayHost, underlayLen);
  if (prefixLen > 30) throw new Error(`fan slice /${prefixLen} too small`);
  return { network, prefixLen, gateway: intToIp(ipToInt(network) + 1), bridge: fanBridgeName(network, prefixLen) };
}

export interface KernelFanHost {
  /** The guest's underlay interface (default vec0). */
  dev?: string;
  /** This host's underlay address and prefix length: 198.18.0.27, 16. */
  underlay: string;
  underlayLen: number;
  /** The fan's overlay (default 250.0.0.0/8). */
  overlay?: string;
  /** Underlay addresses of the other hosts: each one's slice is routed via tunl0 to it. */
  remotes: string[];
  /** Container addresses in this host's slice (default [.3]); each in its own namespace c0, c1, … */
  containers?: string[];
  /** net.ipv4.conf.{all,tunl0}.rp_filter (default 1, strict). */
  rpFilter?: 0 | 1 | 2;
  /** Underlay MTU (default 1500); tunnel, bridge and containers get 20 less. */
  mtu?: number;
}

/**
 * A guest script that sets up kernel ipip as the Fan would on a kernel without fan-map: tunl0 up, a route per
 * remote slice (`ip route add 250.0.28.0/24 via 198.18.0.28 dev tunl0 onlink`), this host's slice on the bridge
 * fan-250-0-27 (250.0.27.1/24, MTU 1480) with container namespaces behind it, ip_forward=1.
 */
export function kernelFanScript(h: KernelFanHost): string {
  const dev = h.dev ?? 'vec0';
  const overlay = h.overlay ?? '250.0.0.0/8';
  const mtu = h.mtu ?? 1500;
  const tmtu = mtu - 20;
  const own = fanSliceOf(overlay, h.underlay, h.underlayLen);
  const containers = h.containers ?? [intToIp(ipToInt(own.network) + 3)];
  const rp = h.rpFilter ?? 1;
  const lines = [
    'set -e',
    `sysctl -qw net.ipv4.conf.all.rp_filter=${rp} net.ipv4.conf.default.rp_filter=${rp} net.ipv4.conf.tunl0.rp_filter=${rp}`,
    `ip link set dev ${dev} mtu ${mtu} up`,
    `ip addr add ${h.underlay}/${h.underlayLen} dev ${dev}`,
    `ip link set dev tunl0 mtu ${tmtu} up`,
    ...h.remotes.map((r) => {
      const s = fanSliceOf(overlay, r, h.underlayLen);
      return `ip route add ${s.network}/${s.prefixLen} via ${r} dev tunl0 onlink`;
    }),
    `ip link add name ${own.bridge} type bridge`,
    `ip link set dev ${own.bridge} mtu ${tmtu} up`,
    `ip addr add ${own.gateway}/${own.prefixLen} dev ${own.bridge}`,
    'sysctl -qw net.ipv4.ip_forward=1',
  ];
  containers.forEach((addr, i) => {
    const c = `c${i}`;
    lines.push(
      `ip netns add ${c}`,
      `ip link add name ${c}h type veth peer name eth0 netns ${c}`,
      `ip link set dev ${c}h mtu ${tmtu} master ${own.bridge} up`,
      `ip -n ${c} link set dev lo up`,
      `ip -n ${c} link set dev eth0 mtu ${tmtu} up`,
      `ip -n ${c} addr add ${addr}/${own.prefixLen} dev eth0`,
      `ip -n ${c} route add default via ${own.gateway} dev eth0`,
    );
  });
  lines.push('set +e');
  return lines.join('\n') + '\n';
}

/** Parse `ip -s -j link show DEV` output (or `ip -s link show DEV` text) into rx/tx packet and byte counters. */
export function parseLinkStats(out: string): { rxPackets: number; rxBytes: number; txPackets: number; txBytes: number; rxErrors: number; rxDropped: number; txErrors: number } {
  const trimmed = out.trim();
  if (trimmed.startsWith('[')) {
    const [l] = JSON.parse(trimmed) as { stats64: { rx: Record<string, number>; tx: Record<string, number> } }[];
    return {
      rxPackets: l.stats64.rx.packets,
      rxBytes: l.stats64.rx.bytes,
      rxErrors: l.stats64.rx.errors,
      rxDropped: l.stats64.rx.dropped,
      txPackets: l.stats64.tx.packets,
      txBytes: l.stats64.tx.bytes,
      txErrors: l.stats64.tx.errors,
    };
  }
  const rx = /RX:[^\n]*\n\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(out);
  const tx = /TX:[^\n]*\n\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(out);
  if (!rx || !tx) throw new Error(`cannot parse link statistics:\n${out}`);
  return {
    rxBytes: Number(rx[1]),
    rxPackets: Number(rx[2]),
    rxErrors: Number(rx[3]),
    rxDropped: Number(rx[4]),
    txBytes: Number(tx[1]),
    txPackets: Number(tx[2]),
    txErrors: Number(tx[3]),
  };
}
