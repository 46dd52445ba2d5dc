// Running commands: argv arrays only (never a shell), always bounded in time.
import { spawn, type ChildProcess } from 'node:child_process';

export interface RunOptions {
  /** Network namespace to run in (via `ip netns exec`); omitted: the current (root) namespace. */
  ns?: string;
  /** Kill the command (SIGKILL) after this many ms. Default 10 000. */
  timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  input?: string | Buffer;
  /** Do not throw on a non-zero exit; the caller reads `code`. */
  allowFail?: boolean;
  /** Extra environment variables. */
  env?: NodeJS.ProcessEnv;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly result: RunResult,
  ) {
    const why = result.timedOut
      ? 'timed out'
      : result.signal
        ? `killed by ${result.signal}`
        : `exit code ${result.code}`;
    const err = result.stderr.trim() || result.stdout.trim();
    super(`command failed (${why}): ${argv.join(' ')}${err ? `\n${err.slice(-2000)}` : ''}`);
    this.name = 'CommandError';
  }
}

/** The argv that runs `argv` inside namespace `ns` (or `argv` itself when ns is undefined). */
export function nsArgv(ns: string | undefined, argv: readonly string[]): string[] {
  if (argv.length === 0) throw new Error('empty argv');
  return ns ? ['ip', 'netns', 'exec', ns, ...argv] : [...argv];
}

const MAX_CAPTURE = 16 * 1024 * 1024;

/** Run a command to completion and capture its output. Throws CommandError on failure unless allowFail. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const full = nsArgv(opts.ns, argv);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(full[0], full.slice(1), {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: opts.env ? { ...process.env, ...opts.env } : process.env,
      });
    } catch (e) {
      reject(e);
      return;
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    let timedOut = false;
    child.stdout!.on('data', (b: Buffer) => {
      if (outLen < MAX_CAPTURE) out.push(b);
      outLen += b.length;
    });
    child.stderr!.on('data', (b: Buffer) => {
      if (errLen < MAX_CAPTURE) err.push(b);
      errLen += b.length;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${full.join(' ')}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result: RunResult = {
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      };
      if ((code !== 0 || timedOut) && !opts.allowFail) reject(new CommandError(full, result));
      else resolve(result);
    });
    child.stdin!.on('error', () => {
      /* the command may exit without reading stdin */
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    else child.stdin!.end();
  });
}

