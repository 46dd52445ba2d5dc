/**
 * Running a delegate plugin (`bridge`, which runs `host-local` itself) by the CNI protocol: found in
 * CNI_PATH (then the usual plugin directories), its configuration on stdin, the same CNI_* variables,
 * bounded in time. Its error object comes back as a CniError with its code.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { CniError, CODE } from './errors.js';
import type { CniEnv } from './config.js';

/** Where Debian (containernetworking-plugins), the upstream tarball and Fedora put the standard plugins. */
export const FALLBACK_PLUGIN_DIRS = ['/usr/lib/cni', '/opt/cni/bin', '/usr/libexec/cni'];
const TIMEOUT_MS = 60_000;

/** The directories to look in: CNI_PATH first. */
export function searchPath(env: CniEnv): string[] {
  return [...new Set([...env.path, ...FALLBACK_PLUGIN_DIRS])];
}

function findPlugin(type: string, dirs: string[]): string {
  for (const d of dirs) {
    try {
      accessSync(`${d}/${type}`, constants.X_OK);
      return `${d}/${type}`;
    } catch {
      /* not here */
    }
  }
  throw new CniError(CODE.badEnvironment, `CNI_PATH ${JSON.stringify(dirs.join(':'))}: has no ${type} plugin: install the standard CNI plugins (Debian: containernetworking-plugins, in /usr/lib/cni)`);
}

export interface DelegateCall {
  command: 'ADD' | 'DEL' | 'CHECK';
  containerId: string;
  ifname: string;
  netns?: string;
}

/** Run `type` with `conf`; resolves its parsed stdout (ADD) or undefined, rejects with its CniError. */
export function execPlugin(type: string, conf: Record<string, unknown>, call: DelegateCall, env: CniEnv): Promise<Record<string, unknown> | undefined> {
  const dirs = searchPath(env);
  const exe = findPlugin(type, dirs);
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    CNI_COMMAND: call.command, CNI_CONTAINERID: call.containerId, CNI_IFNAME: call.ifname, CNI_PATH: dirs.join(':'), CNI_NETNS: call.netns ?? '',
    ...(env.args ? { CNI_ARGS: env.args } : {}),
  };
  if (!call.netns) delete childEnv.CNI_NETNS;
  return new Promise((resolve, reject) => {
    const child = spawn(exe, [], { env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new CniError(CODE.io, `cannot run ${exe}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let parsed: Record<string, unknown> | undefined;
      try {
        parsed = out.trim() ? (JSON.parse(out) as Record<string, unknown>) : undefined;
      } catch {
        parsed = undefined;
      }
      if (code === 0) return resolve(parsed);
      if (parsed && typeof parsed.code === 'number' && typeof parsed.msg === 'string') {
        return reject(new CniError(parsed.code, `${type} plugin: ${parsed.msg}`, typeof parsed.details === 'string' ? parsed.details : undefined));
      }
      const why = signal ? `killed by ${signal}${signal === 'SIGKILL' ? ` (no answer within ${TIMEOUT_MS / 1000} s)` : ''}` : `exit ${code}`;
      reject(new CniError(CODE.io, `${type} plugin (${exe}) failed: ${why}`, (err || out).trim().slice(-2000) || undefined));
    });
    child.stdin.on('error', () => {});
    child.stdin.end(JSON.stringify(conf));
  });
}
