// All data paths, in the order runs interleave them.
import { cRelay, cRelaySpin } from './c-relay.js';
import { kernelIpip } from './kernel-ipip.js';
import { openvpn } from './openvpn.js';
import { socat } from './socat.js';
import type { DataPath } from './types.js';
import { userfan, userfanRaw, userfan1w, userfan1wRaw, userfan1wNoOffload, userfan1wPinned, userfan1wSpread, userfan1wNoBusyPoll, userfanVxlan, userfan1wVxlan, userfanVxlanRaw, userfanVxlanNoOffload } from './userfan.js';
import { veth } from './veth.js';
import { vxlan } from './vxlan.js';

export const ALL_PATHS: DataPath[] = [veth, vxlan, kernelIpip, openvpn, socat, userfan, userfanRaw, userfan1w, userfan1wRaw, userfan1wNoOffload, userfan1wPinned, userfan1wSpread, userfan1wNoBusyPoll, userfanVxlan, userfan1wVxlan, userfanVxlanRaw, userfanVxlanNoOffload, cRelay, cRelaySpin];

/**
 * What `--quick` runs (at most 8, so that it stays short): the paths a user compares when choosing, not the
 * bench's yardsticks for userfan's own design (the C relay, pinning, busy polling).
 */
export const QUICK_PATHS: readonly string[] = [veth, vxlan, kernelIpip, openvpn, userfan, userfan1w, userfanRaw, userfanVxlan].map((p) => p.name);

export function pathByName(name: string): DataPath | undefined {
  return ALL_PATHS.find((p) => p.name === name);
}

export * from './types.js';
