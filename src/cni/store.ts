/**
 * One record per attachment, `<dataDir>/attachments/<network>/<containerID>.<ifname>.json`: the bridge
 * plugin configuration ADD used (so DEL releases the address with the same configuration when the daemon
 * is down, as flannel does) and the host side of the link. Written before the delegate runs, replaced
 * atomically, removed after DEL. The addresses themselves are host-local's files under `<dataDir>/ipam/`.
 */
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { CniError, CODE } from './errors.js';
import type { Attachment } from './config.js';

export interface AttachmentRecord extends Attachment {
  /** The bridge plugin's configuration (without prevResult). */
  delegate: Record<string, unknown>;
  bridge: string;
  /** The host side of the link (set once ADD has succeeded). */
  hostInterface?: string;
  address?: string;
}

const dirOf = (dataDir: string, network: string) => `${dataDir}/attachments/${network}`;
const pathOf = (dataDir: string, network: string, a: Attachment) => `${dirOf(dataDir, network)}/${a.containerID}.${a.ifname}.json`;

function io<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new CniError(CODE.io, `${what}: ${(e as Error).message}`);
  }
}

export function saveRecord(dataDir: string, network: string, r: AttachmentRecord): void {
  const path = pathOf(dataDir, network, r);
  io(`cannot write ${path}`, () => {
    mkdirSync(dirOf(dataDir, network), { recursive: true, mode: 0o700 });
    writeFileSync(`${path}.tmp`, JSON.stringify(r));
    renameSync(`${path}.tmp`, path);
  });
}

export function loadRecord(dataDir: string, network: string, a: Attachment): AttachmentRecord | undefined {
  const path = pathOf(dataDir, network, a);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CniError(CODE.io, `cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as AttachmentRecord;
  } catch {
    return undefined; // a torn record from a crash: treated as none
  }
}

export function removeRecord(dataDir: string, network: string, a: Attachment): void {
  io('cannot remove an attachment record', () => rmSync(pathOf(dataDir, network, a), { force: true }));
}

/** Every record of a network (GC, re-attach). */
export function listRecords(dataDir: string, network: string): AttachmentRecord[] {
  let names: string[];
  try {
    names = readdirSync(dirOf(dataDir, network));
  } catch {
    return [];
  }
  const out: AttachmentRecord[] = [];
  for (const n of names.filter((x) => x.endsWith('.json'))) {
    try {
      out.push(JSON.parse(readFileSync(`${dirOf(dataDir, network)}/${n}`, 'utf8')) as AttachmentRecord);
    } catch {
      /* torn or gone meanwhile */
    }
  }
  return out;
}
