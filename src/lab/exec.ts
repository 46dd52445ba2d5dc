// The lab's processes: long-running commands in namespaces, with their output and an end. One-shot
// commands are the product's run() (src/io/exec.ts), re-exported here for the lab.
import { spawn, type ChildProcess } from 'node:child_process';
import { nsArgv } from '../io/exec.js';
export { CommandError, nsArgv, run, type RunOptions, type RunResult } from '../io/exec.js';

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
