/** Turning `-o/-u` or `-a [--config FILE]` into validated fans, shared by up and down. */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../fan/errors.js';
import type { Fan, FanFlags } from '../fan/fan.js';
import { parseConfigText, parseFan } from '../fan/parse.js';
import { FanTable } from '../fan/table.js';

export const DEFAULT_CONFIG = '/etc/network/fan';

export interface FanArgs {
  overlay?: string;
  underlay?: string;
  all?: boolean;
  config?: string;
  flags?: Partial<FanFlags>;
}

export class UsageError extends Error {}

/** The fans an invocation names; ConfigError/UsageError on anything wrong, before anything is created. */
export function fansFromArgs(a: FanArgs, includeOff = false): Fan[] {
  if (a.all) {
    if (a.overlay || a.underlay) throw new UsageError('give either -a or -o/-u, not both');
    const path = a.config ?? DEFAULT_CONFIG;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new ConfigError('--config', path, `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    const table = new FanTable(); // overlaps and duplicates within the file, named by line
    for (const line of parseConfigText(text)) {
      if (line.flags.off && !includeOff) continue;
      try {
        // `auto`: brought up from the file, as fanctl 0.12's show marks the fans of `up -a`.
        table.add(parseFan(line.overlay, line.underlay, { ...line.flags, auto: true }));
      } catch (e) {
        if (e instanceof ConfigError) throw new ConfigError(`${path} line ${line.line}`, `${line.overlay} ${line.underlay}`, `${e.field} ${JSON.stringify(e.value)}: ${e.rule}`);
        throw e;
      }
    }
    if (table.size === 0) throw new ConfigError('--config', path, 'has no enabled fan (lines UNDERLAY OVERLAY [--flags] or OVERLAY UNDERLAY [flags])');
    return table.fans;
  }
  if (!a.overlay) throw new UsageError('missing -o OVERLAY (e.g. -o 250.0.0.0/8), or -a for the fans of /etc/network/fan');
  if (!a.underlay) throw new UsageError('missing -u UNDERLAY (e.g. -u 172.30.0.28/16 or -u eth0/16)');
  return [parseFan(a.overlay, a.underlay, a.flags ?? {})];
}
