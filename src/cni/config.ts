/**
 * What a runtime hands the plugin: the network configuration on stdin and CNI_* variables (CNI spec 1.0
 * and 1.1), read and checked before anything is touched. Pure: each rule broken is a CniError that names
 * the field (or variable) and the rule.
 *
 * The plugin's own fields, all optional (docs/cni.md):
 *   overlay   which fan, when more than one is up here (e.g. "250.0.0.0/8")
 *   underlay  with overlay: the underlay as `userfan up -u` takes it; checked against the fan that is up
 *   bridge    which fan, by its bridge's name
 *   dataDir   where addresses (host-local's files) and attachment records live (/var/lib/cni/userfan)
 */
import { parseCidr, parseOverlay } from '../fan/parse.js';
import { ConfigError } from '../fan/errors.js';
import { badConfig, CniError, CODE } from './errors.js';

/** Spec versions this plugin speaks; the delegates (bridge, host-local) are run at most at 1.0.0. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export const LATEST_VERSION = '1.1.0';
export const DEFAULT_DATA_DIR = '/var/lib/cni/userfan';
export const COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'] as const;
export type Command = (typeof COMMANDS)[number];

export interface Attachment {
  containerID: string;
  ifname: string;
}

export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  overlay?: string;
  underlay?: string;
  bridge?: string;
  dataDir: string;
  /** The previous result (CHECK, DEL; ADD when chained after another plugin). */
  prevResult?: Record<string, unknown>;
  /** GC: the attachments the runtime still has (`cni.dev/valid-attachments`). */
  validAttachments?: Attachment[];
}

export interface CniEnv {
  command: Command;
  containerId?: string;
  netns?: string;
  ifname?: string;
  /** CNI_ARGS, passed on to the delegates as it came. */
  args?: string;
  path: string[];
}

/** The spec's rule for network names and container IDs. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const BRIDGE = /^[A-Za-z0-9_.-]{1,15}$/;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function optionalString(conf: Record<string, unknown>, field: string): string | undefined {
  const v = conf[field];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw badConfig(field, v, 'must be a non-empty string');
  return v;
}

/** A ConfigError of the fan's parsers as the CNI error for that field. */
function fieldRule<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof ConfigError) throw badConfig(e.field, e.value, e.rule);
    throw e;
  }
}

/** The cniVersion of a configuration, checked against SUPPORTED_VERSIONS. */
export function checkVersion(v: unknown): string {
  if (v === undefined) throw badConfig('cniVersion', v, `is missing: set it to one of ${SUPPORTED_VERSIONS.join(', ')}`);
  if (typeof v !== 'string' || !(SUPPORTED_VERSIONS as readonly string[]).includes(v)) {
    throw new CniError(CODE.incompatibleVersion, `network configuration: cniVersion ${JSON.stringify(v)}: userfan speaks ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  return v;
}

function validAttachments(conf: Record<string, unknown>): Attachment[] | undefined {
  const list = conf['cni.dev/valid-attachments'] ?? conf['cni.dev/attachments'];
  if (list === undefined) return undefined;
  const ok = Array.isArray(list) && list.every((a) => isObject(a) && typeof a.containerID === 'string' && typeof a.ifname === 'string');
  if (!ok) throw badConfig('cni.dev/valid-attachments', list, 'must be a list of {"containerID": ..., "ifname": ...}');
  return (list as Attachment[]).map((a) => ({ containerID: a.containerID, ifname: a.ifname }));
}

/** Parse and check the network configuration a runtime wrote on stdin. */
export function parseNetConf(text: string): NetConf {
  let conf: unknown;
  try {
    conf = JSON.parse(text);
  } catch (e) {
    throw new CniError(CODE.decode, `network configuration on stdin is not JSON (${(e as Error).message}): userfan is a CNI plugin, run by a container runtime (see docs/cni.md)`);
  }
  if (!isObject(conf)) throw new CniError(CODE.decode, 'network configuration on stdin must be a JSON object');
  const cniVersion = checkVersion(conf.cniVersion);
  const name = conf.name;
  if (typeof name !== 'string' || !NAME.test(name)) throw badConfig('name', name, 'must start with a letter or digit, then letters, digits, _ . - (the network\'s name)');
  const type = typeof conf.type === 'string' ? conf.type : 'userfan';
  if (conf.ipam !== undefined) throw badConfig('ipam', conf.ipam, 'userfan hands out addresses from this host\'s slice itself (host-local under dataDir): leave ipam out');
  const overlay = optionalString(conf, 'overlay');
  if (overlay !== undefined) fieldRule(() => parseOverlay(overlay));
  const underlay = optionalString(conf, 'underlay');
  if (underlay !== undefined) {
    if (overlay === undefined) throw badConfig('underlay', underlay, 'needs overlay beside it (e.g. "overlay": "250.0.0.0/8"), or leave both out to take the fan that is up here');
    if (!/^[A-Za-z_][\w.@-]{0,14}\/\d{1,2}$/.test(underlay)) fieldRule(() => parseCidr('underlay', underlay));
  }
  const bridge = optionalString(conf, 'bridge');
  if (bridge !== undefined && !BRIDGE.test(bridge)) throw badConfig('bridge', bridge, 'must be 1-15 characters of letters, digits, . _ - (the fan bridge\'s name, see userfan show)');
  const dataDir = optionalString(conf, 'dataDir') ?? DEFAULT_DATA_DIR;
  if (!dataDir.startsWith('/') || dataDir.includes('\0') || /(^|\/)\.\.(\/|$)/.test(dataDir)) throw badConfig('dataDir', dataDir, 'must be an absolute path without ..');
  if (conf.prevResult !== undefined && !isObject(conf.prevResult)) throw badConfig('prevResult', conf.prevResult, 'must be a result object');
  return {
    cniVersion, name, type, dataDir,
    ...(overlay !== undefined ? { overlay } : {}), ...(underlay !== undefined ? { underlay } : {}), ...(bridge !== undefined ? { bridge } : {}),
    ...(conf.prevResult !== undefined ? { prevResult: conf.prevResult as Record<string, unknown> } : {}),
    ...(validAttachments(conf) ? { validAttachments: validAttachments(conf) } : {}),
  };
}

function badEnv(name: string, value: string | undefined, rule: string): CniError {
  return new CniError(CODE.badEnvironment, `${name}${!value ? ' is not set' : ` ${JSON.stringify(value)}`}: ${rule}`);
}

/** The CNI_* variables, checked for the command they name. */
export function parseEnv(env: Record<string, string | undefined>): CniEnv {
  const command = env.CNI_COMMAND;
  if (command === undefined || !(COMMANDS as readonly string[]).includes(command)) {
    throw badEnv('CNI_COMMAND', command, `must be one of ${COMMANDS.join(', ')}: userfan is a CNI plugin, run by a container runtime (see docs/cni.md)`);
  }
  const cmd = command as Command;
  const out: CniEnv = { command: cmd, path: (env.CNI_PATH ?? '').split(':').filter(Boolean) };
  if (env.CNI_ARGS) out.args = env.CNI_ARGS;
  if (cmd === 'ADD' || cmd === 'DEL' || cmd === 'CHECK') {
    const id = env.CNI_CONTAINERID;
    if (!id || !NAME.test(id)) throw badEnv('CNI_CONTAINERID', id, 'must start with a letter or digit, then letters, digits, _ . -');
    const ifname = env.CNI_IFNAME;
    if (!ifname || ifname.length > 15 || ifname === '.' || ifname === '..' || /[/:\s]/.test(ifname)) throw badEnv('CNI_IFNAME', ifname, 'must be an interface name: 1-15 characters, no / : or spaces');
    out.containerId = id;
    out.ifname = ifname;
    const netns = env.CNI_NETNS;
    if (cmd !== 'DEL' && !netns) throw badEnv('CNI_NETNS', netns, `${cmd} needs the container's network namespace (a path such as /run/netns/NAME)`);
    if (netns) out.netns = netns;
  }
  if (cmd !== 'VERSION' && cmd !== 'STATUS' && out.path.length === 0) throw badEnv('CNI_PATH', env.CNI_PATH, 'must list the directories of the CNI plugins (userfan runs bridge and host-local from there)');
  return out;
}
