/**
 * The one way a test waits: poll a condition until it holds or a deadline passes. No test sleeps for a
 * fixed time; it names what it waits for, and a missed deadline fails with that name.
 */

export interface WaitOptions {
  /** How long to keep polling, in ms (default 10 s). A deadline, never a speed the test asserts. */
  timeoutMs?: number;
  /** Pause between polls, in ms (default 20). */
  intervalMs?: number;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls cond (sync or async) until it returns true or the deadline passes; returns whether it held. */
export async function poll(cond: () => boolean | Promise<boolean>, opts: WaitOptions = {}): Promise<boolean> {
  const { timeoutMs = 10_000, intervalMs = 20 } = opts;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return false;
    await pause(intervalMs);
  }
}

/** Like poll, but a missed deadline throws `timed out waiting for <what>`, so the failure says why. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, opts: WaitOptions = {}): Promise<void> {
  if (!(await poll(cond, opts))) throw new Error(`timed out after ${opts.timeoutMs ?? 10_000} ms waiting for ${what}`);
}

/**
 * Polls get() until its value satisfies ok, and returns that value (or throws as waitFor does). For
 * "the counter reaches N" and "show reports X" waits, where the test then asserts on the value.
 */
export async function waitForValue<T>(what: string, get: () => T | Promise<T>, ok: (v: T) => boolean, opts: WaitOptions = {}): Promise<T> {
  let last!: T;
  if (!(await poll(async () => ok((last = await get())), opts))) {
    throw new Error(`timed out after ${opts.timeoutMs ?? 10_000} ms waiting for ${what}; last seen: ${show(last)}`);
  }
  return last;
}

/** A value for a timeout message: JSON where possible, cut short. */
function show(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 500 ? `${s.slice(0, 500)}…` : s;
}
