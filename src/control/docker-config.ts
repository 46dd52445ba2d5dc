/**
 * What `userfan enable-docker` and `disable-docker` change on disk (fanatic's enable-docker, for userfan):
 *
 * - Docker's daemon.json gets the keys `bridge` (the fan bridge) and `mtu` (the fan's), every other key
 *   kept in its place; the file as it was is copied byte for byte to daemon.json.userfan-backup.
 * - The fan is made persistent as userfan's fans are: a line in the config file `up -a` reads
 *   (/etc/network/fan, which the systemd unit brings up), in 0.12's form `UNDERLAY OVERLAY --enable`,
 *   unless the file already has a line for that fan.
 * - daemon.json.userfan records what was done (whether daemon.json existed, the SHA-256 of what was
 *   written, the exact bytes appended to the config file), so disable-docker undoes exactly that and
 *   nothing else: daemon.json back byte for byte (or removed, if there was none), the appended line gone.
 *
 * Invariant: every check (JSON, conflicting keys, an earlier enable, the config file) runs before the
 * first write; a failed write is rolled back, so a refusal leaves every file as it was.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { formatCidr } from '../fan/addr.js';
import { ConfigError } from '../fan/errors.js';
import type { Fan, FanFlags } from '../fan/fan.js';
import { parseConfigText, parseOverlay, parseUnderlay } from '../fan/parse.js';
import { prefixesOverlap } from '../fan/table.js';

export const DEFAULT_DAEMON_JSON = '/etc/docker/daemon.json';
export const backupPath = (daemonJson: string) => `${daemonJson}.userfan-backup`;
export const recordPath = (daemonJson: string) => `${daemonJson}.userfan`;
/** Marks the config line enable-docker appended, for people reading the file. */
const MARK = '# userfan enable-docker';

/** daemon.json.userfan. */
export interface DockerRecord {
  overlay: string;
  underlay: string;
  bridge: string;
  mtu: number;
  /** daemon.json existed before (then its bytes are in the backup); false: disable-docker removes it. */
  existed: boolean;
  /** SHA-256 of the daemon.json enable-docker wrote: disable-docker restores only over that, never over later edits. */
  wrote: string;
  config: string;
  /** The exact bytes appended to the config file; absent when it already had the fan. */
  appended?: string;
  /** The config file did not exist before. */
  createdConfig?: boolean;
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function readRecord(path: string): DockerRecord | undefined {
  const bytes = readOrUndefined(path, '--daemon-json');
  if (bytes === undefined) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8')) as DockerRecord;
  } catch {
    throw new ConfigError('--daemon-json', path, 'is not a record enable-docker wrote (not JSON): restore daemon.json by hand, then remove it');
  }
}

/** A file's bytes; undefined when there is none; a ConfigError naming `field` when it cannot be read. */
export function readOrUndefined(path: string, field: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(field, path, `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Write through a temporary file and a rename, keeping the mode of the file replaced. */
function writeAtomic(path: string, data: Buffer | string, mode = 0o644): void {
  const tmp = `${path}.userfan-tmp`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, path);
}

/**
 * daemon.json with `bridge` and `mtu` set, every other key kept in its order; with `fixedCidr`, `fixed-cidr`
 * too. Refuses (ConfigError, one line) a file that is not a JSON object, and `bip`, which Docker refuses
 * together with `bridge`.
 */
export function mergeDaemonJson(text: string | undefined, bridge: string, mtu: number, path = DEFAULT_DAEMON_JSON, fixedCidr?: string): string {
  let obj: unknown = {};
  if (text !== undefined) {
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new ConfigError('--daemon-json', path, `is not valid JSON (${(e as Error).message.split('\n')[0]}): fix it or move it away; nothing was changed`);
    }
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new ConfigError('--daemon-json', path, 'is not a JSON object ({…}), as Docker needs: nothing was changed');
  if ('bip' in obj) throw new ConfigError('--daemon-json', path, 'sets "bip", which Docker refuses together with "bridge": remove it first; nothing was changed');
  return `${JSON.stringify({ ...obj, bridge, mtu, ...(fixedCidr ? { 'fixed-cidr': fixedCidr } : {}) }, null, 2)}\n`;
}

/** The config file's line for `fan`: its number and flags, or undefined; refuses a line that overlaps it. */
export function findConfigLine(text: string, fan: Fan, path: string): { line: number; flags: FanFlags } | undefined {
  let lines;
  try {
    lines = parseConfigText(text).map((l) => ({ ...l, prefix: parseOverlay(l.overlay, `line ${l.line} overlay`) }));
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`${path} ${e.field}`, e.value, `${e.rule}; fix the file first`);
    throw e;
  }
  for (const l of lines) {
    const overlay = l.prefix;
    if (!prefixesOverlap(overlay, fan.overlay)) continue;
    let same = overlay.net === fan.overlay.net && overlay.len === fan.overlay.len;
    try {
      const u = parseUnderlay(l.underlay);
      same &&= u.prefix.net === fan.underlay.net && u.prefix.len === fan.underlay.len && u.localHost === fan.localHost;
    } catch {
      same = false; // an underlay this host cannot resolve is not this host's fan
    }
    if (!same) throw new ConfigError('fan', fan.toString(), `overlaps ${path} line ${l.line} (${l.overlay} over ${l.underlay}): remove or change that line first`);
    if (l.flags.off) throw new ConfigError('fan', fan.toString(), `is in ${path} line ${l.line} with off: remove off there first`);
    return { line: l.line, flags: l.flags };
  }
  return undefined;
}

export interface EnableRequest {
  fan: Fan;
  /** What the user wrote, for the config line (an interface or network resolves again at every `up -a`). */
  underlayText: string;
  /** The fan's bridge and MTU (from the config line's flags, or the bridge that is up). */
  bridge: string;
  mtu: number;
  /**
   * The slice, for Docker's `fixed-cidr`, when the bridge's address covers more than it (VXLAN: slice.1/8):
   * Docker hands out addresses from the bridge's subnet, and one outside the slice belongs to another host.
   */
  fixedCidr?: string;
  daemonJson: string;
  config: string;
}

export type EnableResult = { already: true; record: DockerRecord } | { already: false; record: DockerRecord; backup?: string };

/** enable-docker's changes to disk; see the head of this file. */
export function enableDocker(q: EnableRequest): EnableResult {
  const overlay = formatCidr(q.fan.overlay.net, q.fan.overlay.len);
  const underlay = formatCidr(q.fan.underlay.net, q.fan.underlay.len);
  const recPath = recordPath(q.daemonJson);
  const before = readOrUndefined(q.daemonJson, '--daemon-json');
  const r = readRecord(recPath);
  if (r !== undefined) {
    if (r.overlay === overlay && r.underlay === underlay && before !== undefined && sha256(before) === r.wrote) return { already: true, record: r };
    throw new ConfigError('--daemon-json', q.daemonJson, `was set up by an earlier enable-docker for ${r.overlay} over ${r.underlay} (${recPath}): run userfan disable-docker first`);
  }
  if (readOrUndefined(backupPath(q.daemonJson), '--daemon-json') !== undefined) {
    throw new ConfigError('--daemon-json', q.daemonJson, `${backupPath(q.daemonJson)} exists but no record of it does: move it away first (it may be the only copy of an older daemon.json)`);
  }
  const merged = mergeDaemonJson(before?.toString('utf8'), q.bridge, q.mtu, q.daemonJson, q.fixedCidr);
  for (const [field, file] of [['--daemon-json', q.daemonJson], ['--config', q.config]]) {
    if (!existsSync(dirname(file))) throw new ConfigError(field, file, `cannot be written: ${dirname(file)} does not exist${field === '--daemon-json' ? ' (is Docker installed?)' : ''}`);
  }
  const configBefore = readOrUndefined(q.config, '--config');
  const configText = configBefore?.toString('utf8') ?? '';
  const present = findConfigLine(configText, q.fan, q.config);
  const line = `${q.underlayText} ${overlay} --enable  ${MARK}\n`;
  const appended = present ? undefined : `${configText === '' || configText.endsWith('\n') ? '' : '\n'}${line}`;
  const record: DockerRecord = {
    overlay, underlay, bridge: q.bridge, mtu: q.mtu, existed: before !== undefined, wrote: sha256(merged), config: resolve(q.config),
    ...(appended ? { appended, ...(configBefore === undefined ? { createdConfig: true } : {}) } : {}),
  };
  const mode = before ? statSync(q.daemonJson).mode & 0o7777 : 0o644;
  const backup = before ? backupPath(q.daemonJson) : undefined;
  try {
    if (backup && before) writeFileSync(backup, before, { mode });
    writeAtomic(q.daemonJson, merged, mode);
    if (appended) writeAtomic(q.config, configText + appended, configBefore ? statSync(q.config).mode & 0o7777 : 0o644);
    writeFileSync(recPath, `${JSON.stringify(record, null, 2)}\n`);
  } catch (e) {
    // Put back what was changed so far: a failed enable leaves the files as they were.
    if (before) writeAtomic(q.daemonJson, before, mode);
    else rmSync(q.daemonJson, { force: true });
    if (configBefore) writeAtomic(q.config, configBefore);
    else if (appended) rmSync(q.config, { force: true });
    if (backup) rmSync(backup, { force: true });
    rmSync(recPath, { force: true });
    throw e;
  }
  return { already: false, record, backup };
}

export type DisableResult = { nothing: true } | { nothing: false; record: DockerRecord; configLine: 'removed' | 'kept' | 'missing' };

/** The config text without the line enable-docker appended: the appended bytes when still last, else that line wherever it is. */
function withoutAppended(text: string, appended: string): string | undefined {
  if (text.endsWith(appended)) return text.slice(0, text.length - appended.length);
  const lines = text.split(/(?<=\n)/); // each line with its newline
  const i = lines.indexOf(appended.replace(/^\n/, ''));
  if (i < 0) return undefined;
  lines.splice(i, 1);
  return lines.join('');
}

/**
 * disable-docker: undo what the record says enable-docker did. `fan`, when given, must be the recorded
 * one. Refuses, changing nothing, when daemon.json was edited after enable-docker (its bytes would be lost).
 */
export function disableDocker(daemonJson: string, fan?: Fan): DisableResult {
  const recPath = recordPath(daemonJson);
  const r = readRecord(recPath);
  if (r === undefined) return { nothing: true };
  if (fan && (formatCidr(fan.overlay.net, fan.overlay.len) !== r.overlay || formatCidr(fan.underlay.net, fan.underlay.len) !== r.underlay)) {
    throw new ConfigError('fan', fan.toString(), `is not the fan enable-docker set Docker up for (${r.overlay} over ${r.underlay}, ${recPath})`);
  }
  const now = readOrUndefined(daemonJson, '--daemon-json');
  if (now === undefined || sha256(now) !== r.wrote) {
    const how = r.existed ? `copy ${backupPath(daemonJson)} back by hand` : 'remove it by hand';
    throw new ConfigError('--daemon-json', daemonJson, `${now === undefined ? 'is gone' : 'was changed'} since enable-docker, so restoring it would lose that: ${how}, then remove ${recPath}; nothing was changed`);
  }
  const backup = r.existed ? readOrUndefined(backupPath(daemonJson), '--daemon-json') : undefined;
  if (r.existed && backup === undefined) throw new ConfigError('--daemon-json', daemonJson, `its backup ${backupPath(daemonJson)} is gone: restore daemon.json by hand, then remove ${recPath}; nothing was changed`);
  let configLine: 'removed' | 'kept' | 'missing' = 'kept';
  if (r.appended) {
    const text = readOrUndefined(r.config, '--config')?.toString('utf8');
    const rest = text === undefined ? undefined : withoutAppended(text, r.appended);
    if (rest === undefined) configLine = 'missing';
    else {
      if (rest === '' && r.createdConfig) rmSync(r.config, { force: true });
      else writeAtomic(r.config, rest, statSync(r.config).mode & 0o7777);
      configLine = 'removed';
    }
  }
  if (backup) writeAtomic(daemonJson, backup, statSync(daemonJson).mode & 0o7777);
  else rmSync(daemonJson, { force: true });
  rmSync(backupPath(daemonJson), { force: true });
  rmSync(recPath, { force: true });
  return { nothing: false, record: r, configLine };
}
