/**
 * `userfan enable-docker -u U -o O` and `userfan disable-docker`: fanatic's Docker commands for userfan.
 * The files they change, and how exactly disable undoes enable, are src/control/docker-config.ts; here the
 * arguments are checked, the fan's bridge and MTU found, and the user told what to restart.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatCidr } from '../fan/addr.js';
import { type Fan, TYPE_OVERHEAD } from '../fan/fan.js';
import { parseFan } from '../fan/parse.js';
import { DEFAULT_DAEMON_JSON, disableDocker, enableDocker, findConfigLine, readOrUndefined, recordPath } from '../control/docker-config.js';
import { underlayInterface } from '../control/hostnet.js';
import { daemonAlive, readStates } from '../control/state.js';
import { DEFAULT_CONFIG, UsageError } from './fans-from-args.js';

const options = {
  overlay: { type: 'string', short: 'o' }, underlay: { type: 'string', short: 'u' }, 'daemon-json': { type: 'string' }, config: { type: 'string' },
} as const;

function parse(args: string[]) {
  let r;
  try {
    r = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify.*$/s, ''));
  }
  if (r.positionals.length) throw new UsageError(`unexpected ${r.positionals.join(' ')}; see userfan --help`);
  if (r.values.overlay === undefined && r.values.underlay !== undefined) throw new UsageError('missing -o OVERLAY (e.g. -o 250.0.0.0/8)');
  if (r.values.underlay === undefined && r.values.overlay !== undefined) throw new UsageError('missing -u UNDERLAY (e.g. -u eth0/16)');
  return r.values;
}

/** The fan's bridge as a daemon here has it up (name, MTU, pid), when one does. */
function liveBridge(fan: Fan): { bridge: string; mtu: number; pid: number } | undefined {
  const overlay = formatCidr(fan.overlay.net, fan.overlay.len);
  const underlay = formatCidr(fan.underlay.net, fan.underlay.len);
  for (const s of readStates()) {
    const r = s.fans.find((f) => f.overlay === overlay && f.underlay === underlay);
    if (!r || !daemonAlive(s)) continue;
    try {
      return { bridge: r.bridge, mtu: Number(readFileSync(`/sys/class/net/${r.bridge}/mtu`, 'utf8').trim()), pid: s.pid };
    } catch {
      return undefined;
    }
  }
  return undefined;
}

export async function enableDockerCommand(args: string[]): Promise<number> {
  const v = parse(args);
  if (v.overlay === undefined || v.underlay === undefined) throw new UsageError('usage: userfan enable-docker -u UNDERLAY -o OVERLAY [--config FILE] [--daemon-json FILE]');
  const config = v.config ?? DEFAULT_CONFIG;
  const daemonJson = v['daemon-json'] ?? DEFAULT_DAEMON_JSON;
  let fan = parseFan(v.overlay, v.underlay);
  // A line the config file already has for this fan decides its bridge and type (--bridge=, --type=).
  const present = findConfigLine(readOrUndefined(config, '--config')?.toString('utf8') ?? '', fan, config);
  if (present) fan = parseFan(v.overlay, v.underlay, present.flags);
  const live = liveBridge(fan);
  const mtu = live?.mtu ?? (await underlayInterface(fan, v.underlay)).mtu - TYPE_OVERHEAD[fan.type];
  const fixedCidr = fan.bridgePrefixLen < fan.sliceLen ? formatCidr(fan.localSlice, fan.sliceLen) : undefined;
  const r = enableDocker({ fan, underlayText: v.underlay, bridge: live?.bridge ?? fan.bridge, mtu, fixedCidr, daemonJson, config });
  const { bridge } = r.record;
  if (r.already) {
    console.log(`Docker is already set up for ${fan} (${daemonJson}: bridge ${bridge}, mtu ${mtu}): nothing changed`);
    return 0;
  }
  console.log(present
    ? `fan ${fan}: already in ${config} (line ${present.line}), left as it is`
    : `fan ${fan}: added to ${config} as "${r.record.appended?.trim()}", so userfan up -a brings it up`);
  console.log(`docker: ${daemonJson} sets bridge ${bridge}, mtu ${mtu}${fixedCidr ? ` and fixed-cidr ${fixedCidr}` : ''}; ${r.backup ? `the file as it was is in ${r.backup}` : 'there was none before (disable-docker removes it)'}`);
  console.log(live
    ? `the fan is up (bridge ${bridge}, userfan pid ${live.pid})`
    : `the fan is not up yet: run userfan up -a${config === DEFAULT_CONFIG ? '' : ` --config ${config}`} (or systemctl restart userfan) before restarting Docker`);
  console.log('now restart Docker: systemctl restart docker');
  return 0;
}

export async function disableDockerCommand(args: string[]): Promise<number> {
  const v = parse(args);
  if (v.config !== undefined) throw new UsageError('disable-docker takes no --config: it edits the file enable-docker recorded (in DAEMON_JSON.userfan)');
  const daemonJson = v['daemon-json'] ?? DEFAULT_DAEMON_JSON;
  const fan = v.overlay !== undefined && v.underlay !== undefined ? parseFan(v.overlay, v.underlay) : undefined;
  const r = disableDocker(daemonJson, fan);
  if (r.nothing) {
    console.log(`Docker was not set up by userfan enable-docker (no ${recordPath(daemonJson)}): nothing to undo`);
    return 0;
  }
  const { record: rec } = r;
  console.log(`docker: ${daemonJson} ${rec.existed ? 'is back as it was before enable-docker' : 'removed (there was none before enable-docker)'}`);
  console.log(`fan ${rec.overlay} over ${rec.underlay}: ${
    r.configLine === 'removed' ? `the line enable-docker added is gone from ${rec.config}`
      : r.configLine === 'kept' ? `${rec.config} left as it is (its line was there before enable-docker)`
        : `the line enable-docker added is no longer in ${rec.config}: nothing removed there`
  }; a fan that is up stays up until userfan down`);
  console.log('now restart Docker: systemctl restart docker');
  return 0;
}
