/**
 * Why a packet was dropped. Every reason has its own counter (src/io/counters.ts) and a name users see
 * in `userfan stats`. Codes are small integers so the per-packet path returns them without allocating.
 * Egress = a packet read from the TUN on its way out; ingress = an IP-in-IP packet from the underlay.
 */
export const DROP_REASONS = [
  // egress: container → TUN → worker
  ['tx-not-ipv4', 'a packet on the TUN that is not IPv4 (e.g. IPv6 neighbour discovery)'],
  ['tx-malformed', 'a packet on the TUN whose IPv4 header is truncated or inconsistent'],
  ['tx-no-fan', 'destination outside every fan on this host'],
  ['tx-no-underlay-host', 'destination maps to the network or broadcast address of the underlay'],
  ['tx-local-destination', 'destination maps back to this host (its own slice reached the TUN)'],
  ['tx-loop', 'inner source is one of this host\'s underlay addresses (would loop)'],
  ['tx-send-error', 'the kernel refused to send the encapsulated packet'],
  // ingress: underlay → raw socket → worker
  ['rx-truncated-outer', 'outer header shorter than 20 bytes or than its IHL'],
  ['rx-bad-outer-version', 'outer version is not 4'],
  ['rx-bad-outer-ihl', 'outer IHL below 5'],
  ['rx-bad-outer-length', 'outer total length disagrees with the bytes that arrived'],
  ['rx-not-ipip', 'outer protocol is not 4 (IP-in-IP)'],
  ['rx-from-self', 'outer source is this host'],
  ['rx-outer-source-not-underlay', 'outer source is outside every fan\'s underlay'],
  ['rx-truncated-inner', 'inner header shorter than 20 bytes or than its IHL'],
  ['rx-inner-not-ipv4', 'inner packet is not IPv4'],
  ['rx-bad-inner-ihl', 'inner IHL below 5'],
  ['rx-bad-inner-length', 'inner total length disagrees with the outer payload'],
  ['rx-bad-inner-checksum', 'inner header checksum does not verify'],
  ['rx-inner-ttl-zero', 'inner TTL is 0'],
  ['rx-inner-fragment', 'inner packet is a fragment and fragments are not accepted'],
  ['rx-inner-options', 'inner header carries IP options and options are not accepted'],
  ['rx-foreign-overlay', 'inner destination is in none of this daemon\'s overlays (another fan\'s traffic on this host)'],
  ['rx-loop', 'inner source is one of the outer addresses (a tunnel packet wrapped again)'],
  ['rx-spoofed-source', 'inner source is not in the slice of the host that sent the packet'],
  ['rx-wrong-outer-destination', 'outer destination is not this host\'s address in the inner source\'s fan'],
  ['rx-not-local', 'inner destination is not in a slice of this host'],
  ['rx-ecn-ce-not-ect', 'outer ECN is CE over a Not-ECT inner packet (RFC 6040: drop)'],
  ['rx-write-error', 'the kernel refused the decapsulated packet on the TUN'],
  // The VXLAN type (--type vxlan): Ethernet frames from a TAP, VXLAN over UDP.
  ['tx-not-ipv4-or-arp', 'a frame on the TAP that is neither IPv4 nor ARP (the Fan carries only those)'],
  ['rx-vxlan-truncated', 'a datagram shorter than the VXLAN and Ethernet headers'],
  ['rx-vxlan-flags', 'VXLAN flags other than I (0x08), or reserved bits set'],
  ['rx-vxlan-vni', 'a VNI other than this fan\'s'],
  ['rx-vxlan-ethertype', 'an inner frame that is neither IPv4 nor ARP'],
  ['rx-vxlan-bad-mac', 'an inner source MAC that is multicast or zero'],
] as const;

export type DropName = (typeof DROP_REASONS)[number][0];

/** Drop codes start at 1 (0 means "not dropped"). */
export const Drop = Object.fromEntries(DROP_REASONS.map(([name], i) => [name, i + 1])) as { readonly [K in DropName]: number };

/** Number of counter slots needed: codes 1..N. */
export const DROP_SLOTS = DROP_REASONS.length + 1;

export function dropName(code: number): DropName {
  const r = DROP_REASONS[code - 1];
  if (!r) throw new RangeError(`no drop reason ${code}`);
  return r[0];
}
