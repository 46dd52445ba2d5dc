// Running commands for the namespace lab: argv arrays only (never a shell), always bounded in time.
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

export interface SpawnOptions {
  ns?: string;
  env?: NodeJS.ProcessEnv;
  /** Called with each complete stdout / stderr line. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Keep at most this many output lines (per process, both streams). Default 2000. */
  keepLines?: number;
}

/** A long-running process. stop() sends SIGTERM, then SIGKILL after a bound. */
export class ProcessHandle {
  readonly argv: string[];
  readonly child: ChildProcess;
  /** Recent output lines, oldest first. */
  readonly lines: { stream: 'stdout' | 'stderr'; line: string }[] = [];
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  readonly exited: Promise<void>;
  private readonly waiters = new Set<(line: string, stream: 'stdout' | 'stderr') => void>();
  private spawnError: Error | undefined;
  private done = false;

  constructor(argv: readonly string[], opts: SpawnOptions = {}) {
    this.argv = nsArgv(opts.ns, argv);
    const keep = opts.keepLines ?? 2000;
    this.child = spawn(this.argv[0], this.argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    this.exited = new Promise((resolve) => {
      this.child.on('error', (e) => {
        this.spawnError = e;
        this.done = true;
        resolve();
      });
      this.child.on('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        this.done = true;
        resolve();
      });
    });
    for (const stream of ['stdout', 'stderr'] as const) {
      let partial = '';
      this.child[stream]!.setEncoding('utf8');
      this.child[stream]!.on('data', (chunk: string) => {
        partial += chunk;
        let i: number;
        while ((i = partial.indexOf('\n')) >= 0) {
          const line = partial.slice(0, i);
          partial = partial.slice(i + 1);
          this.lines.push({ stream, line });
          if (this.lines.length > keep) this.lines.shift();
          opts.onLine?.(line, stream);
          for (const w of [...this.waiters]) w(line, stream);
        }
      });
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return !this.done;
  }

  /** The last lines of output, for error messages. */
  tail(n = 20): string {
    return this.lines
      .slice(-n)
      .map((l) => (l.stream === 'stderr' ? `! ${l.line}` : `  ${l.line}`))
      .join('\n');
  }

  /**
   * Wait for an output line matching `pred` (already printed lines count too).
   * Rejects if the process exits first or after timeoutMs.
   */
  waitForLine(
    pred: RegExp | ((line: string, stream: 'stdout' | 'stderr') => boolean),
    timeoutMs: number,
  ): Promise<string> {
    const test = typeof pred === 'function' ? pred : (l: string) => pred.test(l);
    const seen = this.lines.find((l) => test(l.line, l.stream));
    if (seen) return Promise.resolve(seen.line);
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      const waiter = (line: string, stream: 'stdout' | 'stderr') => {
        if (test(line, stream)) {
          cleanup();
          resolve(line);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for output of ${this.argv.join(' ')}\n${this.tail()}`));
      }, timeoutMs);
      this.waiters.add(waiter);
      void this.exited.then(() => {
        if (!this.waiters.has(waiter)) return;
        cleanup();
        const why = this.spawnError
          ? this.spawnError.message
          : `exit code ${this.exitCode}${this.exitSignal ? ` (${this.exitSignal})` : ''}`;
        reject(new Error(`process exited (${why}) before expected output: ${this.argv.join(' ')}\n${this.tail()}`));
      });
    });
  }

  /** Wait for the process to exit by itself, at most timeoutMs; then SIGKILL. Resolves with the exit code. */
  async wait(timeoutMs: number): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.kill('SIGKILL');
      await this.exited;
    }
    return this.exitCode;
  }

  kill(signal: NodeJS.Signals): void {
    if (this.done) return;
    try {
      this.child.kill(signal);
    } catch {
      /* already gone */
    }
  }

  /** SIGTERM, then SIGKILL if still running after graceMs (default 3000). Idempotent. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.done) return;
    this.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const gone = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), graceMs))),
    ]);
    clearTimeout(timer);
    if (!gone) {
      this.kill('SIGKILL');
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, 2000))]);
    }
  }
}

/** Start a long-running process (in a namespace when opts.ns is given). */
export function spawnProcess(argv: readonly string[], opts: SpawnOptions = {}): ProcessHandle {
  return new ProcessHandle(argv, opts);
}
