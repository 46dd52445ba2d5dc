/**
 * CNI error objects (spec 1.0, "Error"): `{cniVersion, code, msg, details}` on stdout and a non-zero exit.
 * Codes below 100 are the spec's well-known ones; 100 and up are userfan's own (docs/cni.md lists them).
 */
import { ConfigError } from '../fan/errors.js';

export const CODE = {
  /** The configuration's cniVersion is not one this plugin speaks. */
  incompatibleVersion: 1,
  /** CHECK: this plugin has no record of the container's attachment. */
  unknownContainer: 3,
  /** A CNI_* variable is missing or malformed (or CNI_PATH has no delegate plugin). */
  badEnvironment: 4,
  /** Reading or writing the plugin's data directory failed. */
  io: 5,
  /** stdin is not JSON (or not an object). */
  decode: 6,
  /** A field of the network configuration breaks a rule. */
  badConfig: 7,
  /** No fan is up here (yet): start `userfan up`, then the runtime may try again. */
  tryAgainLater: 11,
  /** STATUS: the plugin cannot serve ADD now (the fan is not up). */
  notAvailable: 50,
  /** userfan: every address of this host's slice is handed out. */
  sliceExhausted: 100,
  /** userfan: CHECK found the container's host-side interface off the fan bridge. */
  notOnBridge: 101,
} as const;

export class CniError extends Error {
  constructor(
    readonly code: number,
    msg: string,
    readonly details?: string,
  ) {
    super(msg);
    this.name = 'CniError';
  }
}

/** A configuration error (a field and its rule) as a CNI error with code 7. */
export function badConfig(field: string, value: unknown, rule: string): CniError {
  return new CniError(CODE.badConfig, `network configuration: ${field} ${JSON.stringify(value)}: ${rule}`);
}

/** The error object a failure prints: CniErrors as they are, ConfigErrors as code 7, anything else as I/O. */
export function errorObject(e: unknown, cniVersion: string): { cniVersion: string; code: number; msg: string; details?: string } {
  if (e instanceof CniError) return { cniVersion, code: e.code, msg: e.message, ...(e.details ? { details: e.details } : {}) };
  if (e instanceof ConfigError) return { cniVersion, code: CODE.badConfig, msg: `network configuration: ${e.message}` };
  const err = e as NodeJS.ErrnoException;
  return { cniVersion, code: CODE.io, msg: `userfan: ${err?.message ?? String(e)}`, ...(err?.stack ? { details: err.stack } : {}) };
}
