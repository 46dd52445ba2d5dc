/**
 * What every command shares: the option parser (usage errors as UsageError), whole-number options with
 * their range, and the fan options (-o, -u, -a, --config).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from '../fan/errors.js';
import { UsageError } from './fans-from-args.js';

export type Handler = (args: string[]) => Promise<number> | number;

export function opts<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify.*$/s, ''));
  }
}

export const fanOptions = {
  overlay: { type: 'string', short: 'o' },
  underlay: { type: 'string', short: 'u' },
  all: { type: 'boolean', short: 'a' },
  config: { type: 'string' },
} as const;

export function intOption(name: string, text: string | undefined, def: number, min: number, max: number): number {
  if (text === undefined) return def;
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) throw new ConfigError(name, text, `must be a whole number from ${min} to ${max}`);
  return Number(text);
}
