/**
 * `userfan cni install [--dir /opt/cni/bin] [--conf-dir DIR] [--print-config] [--name NAME] [-o OVERLAY]
 * [--bridge NAME] [--data-dir DIR]`: writes the plugin's executable (a launcher that runs this userfan's
 * plugin with the node that runs this command) and prints the network configuration a runtime needs
 * (written to DIR with --conf-dir). `userfan cni reattach` puts the links of containers attached earlier
 * back on a fan bridge that a restarted userfan made anew.
 */
import { accessSync, chmodSync, constants, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError } from '../fan/errors.js';
import { parseOverlay } from '../fan/parse.js';
import { DEFAULT_DATA_DIR } from './config.js';
import { CniError } from './errors.js';
import { FALLBACK_PLUGIN_DIRS } from './exec-plugin.js';
import { fanHere } from './fan-here.js';
import { reattach } from './plugin.js';

export const DEFAULT_PLUGIN_DIR = '/opt/cni/bin';
export const DEFAULT_NETWORK = 'userfan';
/** The cniVersion of the configuration printed: the newest that Debian's libcni (podman 4.3) and plugins 1.1 speak. */
export const CONFIG_VERSION = '1.0.0';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The launcher: a shell script that execs node on the plugin of this checkout. */
export function launcherText(node: string, main: string): string {
  return `#!/bin/sh\n# The userfan CNI plugin, written by \`userfan cni install\`: runs ${main}.\nexec ${shellQuote(node)} ${shellQuote(main)} "$@"\n`;
}

export interface ConfigOptions {
  name: string;
  overlay?: string;
  bridge?: string;
  dataDir?: string;
}

/** The network configuration list users copy into their runtime's CNI directory. */
export function conflist(o: ConfigOptions): Record<string, unknown> {
  return {
    cniVersion: CONFIG_VERSION,
    name: o.name,
    plugins: [{ type: 'userfan', ...(o.overlay ? { overlay: o.overlay } : {}), ...(o.bridge ? { bridge: o.bridge } : {}), ...(o.dataDir ? { dataDir: o.dataDir } : {}) }],
  };
}

function options(args: string[]) {
  try {
    return parseArgs({
      args, allowPositionals: true, strict: true,
      options: {
        dir: { type: 'string' }, 'conf-dir': { type: 'string' }, 'print-config': { type: 'boolean' }, name: { type: 'string' },
        overlay: { type: 'string', short: 'o' }, bridge: { type: 'string' }, 'data-dir': { type: 'string' },
      },
    });
  } catch (e) {
    throw new ConfigError('arguments', args.join(' '), `${(e as Error).message.replace(/\. To specify.*$/s, '')}; usage: userfan cni install [--dir DIR] [--conf-dir DIR] [--print-config] [--name NAME] [-o OVERLAY] [--bridge NAME] [--data-dir DIR] | userfan cni reattach [--name NAME] [--data-dir DIR]`);
  }
}

function absolute(field: string, p: string | undefined): string | undefined {
  if (p !== undefined && (!p.startsWith('/') || /(^|\/)\.\.(\/|$)/.test(p))) throw new ConfigError(field, p, 'must be an absolute path without ..');
  return p;
}

function configOptions(v: ReturnType<typeof options>['values']): ConfigOptions {
  const name = v.name ?? DEFAULT_NETWORK;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw new ConfigError('--name', name, 'must start with a letter or digit, then letters, digits, _ . - (the network\'s name)');
  if (v.overlay !== undefined) parseOverlay(v.overlay, '--overlay');
  if (v.bridge !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(v.bridge)) throw new ConfigError('--bridge', v.bridge, 'must be 1-15 characters of letters, digits, . _ -');
  return { name, overlay: v.overlay, bridge: v.bridge, dataDir: absolute('--data-dir', v['data-dir']) };
}

function writeAtomic(path: string, text: string, mode: number): void {
  writeFileSync(`${path}.tmp`, text, { mode });
  chmodSync(`${path}.tmp`, mode);
  renameSync(`${path}.tmp`, path);
}

const hasPlugin = (dir: string, type: string) => {
  try {
    accessSync(`${dir}/${type}`, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

function install(v: ReturnType<typeof options>['values']): number {
  const conf = configOptions(v);
  const text = `${JSON.stringify(conflist(conf), null, 2)}\n`;
  if (v['print-config']) {
    process.stdout.write(text);
    return 0;
  }
  const dir = absolute('--dir', v.dir) ?? DEFAULT_PLUGIN_DIR;
  const confDir = absolute('--conf-dir', v['conf-dir']);
  mkdirSync(dir, { recursive: true });
  writeAtomic(`${dir}/userfan`, launcherText(process.execPath, MAIN), 0o755);
  console.error(`installed ${dir}/userfan (runs ${process.execPath} ${MAIN})`);
  if (![dir, ...FALLBACK_PLUGIN_DIRS].some((d) => hasPlugin(d, 'bridge') && hasPlugin(d, 'host-local'))) {
    console.error(`note: no bridge and host-local plugins in ${dir} or ${FALLBACK_PLUGIN_DIRS.join(', ')}: userfan hands them the attachment; install the standard CNI plugins (Debian: containernetworking-plugins)`);
  }
  if (confDir) {
    mkdirSync(confDir, { recursive: true });
    writeAtomic(`${confDir}/10-${conf.name}.conflist`, text, 0o644);
    console.error(`wrote ${confDir}/10-${conf.name}.conflist`);
  } else {
    console.error('network configuration (put it in your runtime\'s CNI configuration directory, e.g. /etc/cni/net.d/10-userfan.conflist):');
  }
  process.stdout.write(text);
  return 0;
}

/** `userfan cni …`. */
export async function cniCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values: v, positionals } = options(rest);
  if (positionals.length) throw new ConfigError('arguments', positionals.join(' '), `userfan cni ${sub} takes options only`);
  if (sub === 'install') return install(v);
  if (sub === 'reattach') {
    const conf = configOptions(v);
    let fan;
    try {
      fan = await fanHere({ cniVersion: CONFIG_VERSION, name: conf.name, type: 'userfan', dataDir: conf.dataDir ?? DEFAULT_DATA_DIR, overlay: conf.overlay, bridge: conf.bridge });
    } catch (e) {
      if (!(e instanceof CniError)) throw e;
      console.error(`userfan cni reattach: ${e.message}`);
      return 1;
    }
    const done = await reattach(conf.dataDir ?? DEFAULT_DATA_DIR, conf.name, fan);
    console.log(`${done.length} link(s) put back on ${fan.bridge}${done.length ? `: ${done.join(' ')}` : ''}`);
    return 0;
  }
  throw new ConfigError('subcommand', sub ?? '', 'expected install (the plugin and its network configuration) or reattach (links back on a restarted fan\'s bridge)');
}
