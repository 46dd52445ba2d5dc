// All data paths, in the order runs interleave them.
import { cRelay, cRelaySpin } from './c-relay.js';
import { kernelIpip } from './kernel-ipip.js';
import { openvpn } from './openvpn.js';
import { socat } from './socat.js';
import type { DataPath } from './types.js';
import { userfan, userfanRaw, userfan1w, userfan1wRaw, userfan1wNoOffload, userfan1wPacket, userfan1wPacketNoGso, userfan1wPacketXdp, userfanPacket, userfan1wGso, userfan1wPinned, userfan1wPinnedXdp, userfan1wSpread, userfan1wXdp, userfan1wNoBusyPoll } from './userfan.js';
import { veth } from './veth.js';
import { vxlan } from './vxlan.js';

export const ALL_PATHS: DataPath[] = [veth, vxlan, kernelIpip, openvpn, socat, userfan, userfanRaw, userfanPacket, userfan1w, userfan1wRaw, userfan1wNoOffload, userfan1wPacket, userfan1wPacketNoGso, userfan1wGso, userfan1wPinned, userfan1wSpread, userfan1wXdp, userfan1wPacketXdp, userfan1wPinnedXdp, userfan1wNoBusyPoll, cRelay, cRelaySpin];

export function pathByName(name: string): DataPath | undefined {
  return ALL_PATHS.find((p) => p.name === name);
}

export * from './types.js';
