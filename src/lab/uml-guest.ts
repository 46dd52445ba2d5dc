// A running user-mode Linux guest seen from the host: its per-run directory (the same path inside the
// guest) carries commands in and results out as files, written whole and renamed so neither side reads half
// a file. Started by startUml() (src/lab/uml.ts).
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProcessHandle } from './exec.js';
import { UML_BOOT_DEADLINE_MS } from './uml-kernel.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface UmlResult {
  /** The script's exit status (null: it never finished). */
  status: number | null;
  /** The script's stdout + stderr. */
  output: string;
  /** linux.uml's own console (boot messages, kernel warnings). */
  console: string;
  /** linux.uml's exit code (0 after a clean power-off; 124/137 after timeout). */
  exitCode: number | null;
}

export interface ExecResult {
  code: number;
  output: string;
}

function writeAtomic(path: string, data: string): void {
  writeFileSync(path + '.tmp', data);
  renameSync(path + '.tmp', path);
}

/** A file's text, or undefined when it cannot be read (not written yet, or gone). */
export function readIf(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

// Guests still alive at process exit are killed and their directories removed.
const liveGuests = new Set<UmlGuest>();
let exitHook = false;

/** Kill the guest and remove its directory when this process exits, unless dispose() came first. */
export function disposeAtExit(guest: UmlGuest): void {
  liveGuests.add(guest);
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const g of liveGuests) g.disposeSync();
  });
}

/** A running user-mode Linux guest. */
export class UmlGuest {
  private cmdSeq = 0;
  private disposed = false;
  private execChain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly umid: string,
    /** The per-run directory on the host (the same path inside the guest). */
    readonly dir: string,
    readonly proc: ProcessHandle,
    readonly ns: string,
  ) {}

  get running(): boolean {
    return this.proc.running;
  }

  /** Content of a file the guest wrote in its directory (undefined if absent). */
  readFile(name: string): string | undefined {
    return readIf(join(this.dir, name));
  }

  /** Create a file in the shared directory (atomically) for the guest to see. */
  writeFile(name: string, data: string): void {
    writeAtomic(join(this.dir, name), data);
  }

  /** linux.uml's console output so far. */
  console(): string {
    return this.proc.lines.map((l) => l.line).join('\n');
  }

  private failure(what: string): Error {
    const out = this.readFile('output') ?? '';
    return new Error(
      `uml ${this.umid}: ${what}\n--- guest script output (tail) ---\n${out.slice(-3000)}\n--- console (tail) ---\n${this.proc.tail(15)}`,
    );
  }

  /** Wait (polling, bounded) for the guest to create `name`; returns its content. Throws if the guest dies first. */
  async waitFile(name: string, timeoutMs: number): Promise<string> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const s = this.readFile(name);
      if (s !== undefined) return s;
      if (!this.proc.running) {
        const again = this.readFile(name);
        if (again !== undefined) return again;
        throw this.failure(`guest exited (code ${this.proc.exitCode}) before writing ${name}`);
      }
      if (Date.now() >= until) throw this.failure(`no ${name} from the guest within ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  /** Wait for the guest script to reach `uf_serve` (by default as long as a boot may take on a loaded machine). */
  ready(timeoutMs = UML_BOOT_DEADLINE_MS): Promise<string> {
    return this.waitFile('serving', timeoutMs);
  }

  /**
   * Run a bash snippet in the guest (its script must be in `uf_serve`). Commands run one at a time, in order;
   * a command is killed in the guest after timeoutMs, and the host gives up shortly after that.
   */
  exec(cmd: string, opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    const p = this.execChain.then(() => this.execNow(cmd, opts.timeoutMs ?? 30_000));
    this.execChain = p.catch(() => undefined);
    return p;
  }

  /** exec(), throwing unless the command exits 0; returns its output. */
  async execOk(cmd: string, opts: { timeoutMs?: number } = {}): Promise<string> {
    const r = await this.exec(cmd, opts);
    if (r.code !== 0) throw new Error(`uml ${this.umid}: command failed (status ${r.code}): ${cmd}\n${r.output.slice(-3000)}`);
    return r.output;
  }

  private async execNow(cmd: string, timeoutMs: number): Promise<ExecResult> {
    const n = this.cmdSeq++;
    const secs = Math.max(1, Math.ceil(timeoutMs / 1000));
    this.writeFile(`cmd-${n}.sh`, `#timeout=${secs}\n${cmd}\n`);
    const status = await this.waitFile(`res-${n}.status`, timeoutMs + 5000);
    return { code: Number(status.trim()), output: this.readFile(`res-${n}.out`) ?? '' };
  }

  /** Wait for the guest to power off by itself (bounded; then it is killed). */
  async wait(timeoutMs: number): Promise<UmlResult> {
    await this.proc.wait(timeoutMs);
    if (this.proc.running) this.kill();
    const st = this.readFile('status');
    return {
      status: st === undefined ? null : Number(st.trim()),
      output: this.readFile('output') ?? '',
      console: this.console(),
      exitCode: this.proc.exitCode,
    };
  }

  /** Ask a serving guest to finish (its script returns from uf_serve and the guest powers off); bounded. */
  async shutdown(timeoutMs = 20_000): Promise<UmlResult> {
    if (this.proc.running) this.writeFile('stop', '');
    return this.wait(timeoutMs);
  }

  /** SIGKILL linux.uml and every process of its group (timeout(1) leads the group). */
  kill(): void {
    const pid = this.proc.pid;
    if (pid !== undefined && this.proc.running) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        this.proc.kill('SIGKILL');
      }
    }
  }

  /** Stop the guest if still running and remove its directory. Idempotent; never throws. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    if (this.proc.running) {
      this.kill();
      await this.proc.wait(5000).catch(() => undefined);
    }
    liveGuests.delete(this);
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }

  disposeSync(): void {
    this.disposed = true;
    this.kill();
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
}
