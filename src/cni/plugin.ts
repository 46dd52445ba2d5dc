/**
 * The `userfan` CNI plugin's commands (spec 1.0: ADD, DEL, CHECK, VERSION; 1.1: GC, STATUS). ADD finds the
 * fan that is up here (fan-here.ts), records the attachment, and hands the rest to the standard `bridge`
 * plugin with `host-local` IPAM (delegate.ts), as flannel does. host-local allocates under an flock of its
 * data directory (`<dataDir>/ipam/<network>/lock`), so concurrent ADDs get distinct addresses, and its
 * files outlive the daemon: addresses survive a userfan restart, and DEL releases them with the recorded
 * configuration when the daemon is down.
 */
import { run } from '../io/exec.js';
import { badConfig, CniError, CODE } from './errors.js';
import { checkVersion, LATEST_VERSION, parseNetConf, SUPPORTED_VERSIONS, type CniEnv, type NetConf } from './config.js';
import { adaptResult, bridgeConf, delegateVersion, explainDelegateError, hostInterface, versionAnswer, type FanHere } from './delegate.js';
import { execPlugin } from './exec-plugin.js';
import { fanHere } from './fan-here.js';
import { listRecords, loadRecord, removeRecord, saveRecord, type AttachmentRecord } from './store.js';

/**
 * Each interface of this namespace and the bridge it is a port of (absent: none), in one netlink dump
 * (`ip`, as fan-here.ts asks: /sys may show another namespace under `nsenter --net`).
 */
export async function masters(): Promise<Map<string, string | undefined>> {
  const r = await run(['ip', '-j', 'link', 'show'], { allowFail: true, timeoutMs: 10_000 });
  try {
    return new Map((JSON.parse(r.stdout) as { ifname: string; master?: string }[]).map((l) => [l.ifname, l.master]));
  } catch {
    return new Map();
  }
}

/** A stored bridge configuration made ready for this call's version (and the runtime's prevResult). */
function delegateFor(rec: Pick<AttachmentRecord, 'delegate'>, conf: NetConf, withPrev: boolean): Record<string, unknown> {
  const v = delegateVersion(conf.cniVersion);
  return { ...rec.delegate, cniVersion: v, ...(withPrev && conf.prevResult ? { prevResult: { ...conf.prevResult, cniVersion: v } } : {}) };
}

/**
 * Ports userfan's bridge lost: a restarted daemon makes its bridge anew, and the host sides of the links
 * of containers attached before are left on no bridge. Put them back (each ADD does; so does
 * `userfan cni reattach`). Returns the interfaces re-attached.
 */
export async function reattach(dataDir: string, network: string, fan: Pick<FanHere, 'bridge'>): Promise<string[]> {
  const done: string[] = [];
  const ports = await masters();
  for (const r of listRecords(dataDir, network)) {
    if (r.bridge !== fan.bridge || !r.hostInterface || !ports.has(r.hostInterface) || ports.get(r.hostInterface) !== undefined) continue;
    const res = await run(['ip', 'link', 'set', 'dev', r.hostInterface, 'master', fan.bridge], { allowFail: true });
    if (res.code === 0) done.push(r.hostInterface);
  }
  return done;
}

/** ADD. The plugin is a main plugin: a prevResult (chained after another plugin) is replaced, not merged. */
async function add(conf: NetConf, env: CniEnv): Promise<string> {
  const fan = await fanHere(conf);
  const delegate = bridgeConf(conf, fan);
  const a = { containerID: env.containerId!, ifname: env.ifname! };
  const call = { containerId: a.containerID, ifname: a.ifname, netns: env.netns };
  saveRecord(conf.dataDir, conf.name, { ...a, delegate, bridge: fan.bridge });
  let result: Record<string, unknown> | undefined;
  try {
    result = await execPlugin('bridge', delegate, { command: 'ADD', ...call }, env);
    if (!result) throw new CniError(CODE.io, 'bridge plugin: ADD printed no result');
  } catch (e) {
    // Undo what the bridge plugin may have made (a link, an address) before saying why.
    await execPlugin('bridge', delegate, { command: 'DEL', ...call }, env).catch(() => undefined);
    removeRecord(conf.dataDir, conf.name, a);
    throw e instanceof CniError ? explainDelegateError(e, fan) : e;
  }
  const ips = (result.ips ?? []) as { address?: string }[];
  saveRecord(conf.dataDir, conf.name, { ...a, delegate, bridge: fan.bridge, hostInterface: hostInterface(result, fan.bridge), address: ips[0]?.address });
  await reattach(conf.dataDir, conf.name, fan);
  return JSON.stringify(adaptResult(result, conf.cniVersion));
}

async function del(conf: NetConf, env: CniEnv): Promise<string> {
  const a = { containerID: env.containerId!, ifname: env.ifname! };
  let rec: Pick<AttachmentRecord, 'delegate'> | undefined = loadRecord(conf.dataDir, conf.name, a);
  if (!rec) {
    // Nothing recorded: with the fan up, release whatever host-local holds for this container; else there is nothing of ours.
    try {
      rec = { delegate: bridgeConf(conf, await fanHere(conf)) };
    } catch {
      return '';
    }
  }
  await execPlugin('bridge', delegateFor(rec, conf, true), { command: 'DEL', containerId: a.containerID, ifname: a.ifname, netns: env.netns }, env);
  removeRecord(conf.dataDir, conf.name, a);
  return '';
}

async function check(conf: NetConf, env: CniEnv): Promise<string> {
  const fan = await fanHere(conf);
  if (!conf.prevResult) throw badConfig('prevResult', undefined, 'CHECK needs the result of ADD (the runtime passes it)');
  const a = { containerID: env.containerId!, ifname: env.ifname! };
  const rec = loadRecord(conf.dataDir, conf.name, a);
  if (!rec) throw new CniError(CODE.unknownContainer, `container ${a.containerID} (${a.ifname}) is not attached to network ${conf.name} on this host (no record in ${conf.dataDir}/attachments)`);
  if (rec.hostInterface) {
    const master = (await masters()).get(rec.hostInterface);
    if (master !== fan.bridge) {
      throw new CniError(CODE.notOnBridge, `container ${a.containerID}'s link ${rec.hostInterface} is ${master ? `a port of ${master}` : 'on no bridge'}, not of fan bridge ${fan.bridge} (userfan restarted? the next ADD or userfan cni reattach puts it back)`);
    }
  }
  // The bridge is userfan's: a restarted daemon makes it anew with another MAC. The port is checked above;
  // the bridge plugin checks the rest (the container's link, addresses, routes) without the bridge's MAC.
  const d = delegateFor(rec, conf, true);
  const prev = d.prevResult as { interfaces?: { name?: string; mac?: string; sandbox?: string }[] } | undefined;
  if (prev?.interfaces) prev.interfaces = prev.interfaces.map((i) => (i.name === fan.bridge && !i.sandbox ? { name: i.name } : i));
  await execPlugin('bridge', d, { command: 'CHECK', containerId: a.containerID, ifname: a.ifname, netns: env.netns }, env);
  return '';
}

/** GC (spec 1.1): release every recorded attachment the runtime no longer lists. */
async function gc(conf: NetConf, env: CniEnv): Promise<string> {
  if (!conf.validAttachments) throw badConfig('cni.dev/valid-attachments', undefined, 'GC needs the list of attachments to keep');
  const keep = new Set(conf.validAttachments.map((x) => `${x.containerID}\n${x.ifname}`));
  const failed: string[] = [];
  for (const r of listRecords(conf.dataDir, conf.name)) {
    if (keep.has(`${r.containerID}\n${r.ifname}`)) continue;
    try {
      await execPlugin('bridge', delegateFor(r, conf, false), { command: 'DEL', containerId: r.containerID, ifname: r.ifname }, env);
      removeRecord(conf.dataDir, conf.name, r);
    } catch (e) {
      failed.push(`${r.containerID} (${r.ifname}): ${(e as Error).message}`);
    }
  }
  if (failed.length) throw new CniError(CODE.io, `GC could not release ${failed.length} attachment(s)`, failed.join('\n'));
  return '';
}

/** STATUS (spec 1.1): ready when the fan is up here; else code 50 with the reason. */
async function status(conf: NetConf): Promise<string> {
  try {
    await fanHere(conf);
  } catch (e) {
    if (e instanceof CniError && e.code === CODE.tryAgainLater) throw new CniError(CODE.notAvailable, e.message);
    throw e;
  }
  return '';
}

/** Run one command; resolves what goes on stdout (empty for DEL, CHECK, GC, STATUS). */
export async function runCommand(env: CniEnv, stdin: string): Promise<string> {
  if (env.command === 'VERSION') {
    let asked: unknown;
    try {
      asked = (JSON.parse(stdin || '{}') as { cniVersion?: unknown }).cniVersion;
    } catch {
      asked = undefined;
    }
    return JSON.stringify(versionAnswer(asked, SUPPORTED_VERSIONS, LATEST_VERSION));
  }
  const conf = parseNetConf(stdin);
  switch (env.command) {
    case 'ADD':
      return add(conf, env);
    case 'DEL':
      return del(conf, env);
    case 'CHECK':
      return check(conf, env);
    case 'GC':
      return gc(conf, env);
    case 'STATUS':
      return status(conf);
  }
}

/** The version to write an error in: the configuration's when it is one this plugin speaks. */
export function errorVersion(stdin: string): string {
  try {
    return checkVersion((JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion);
  } catch {
    return LATEST_VERSION;
  }
}
