// A real container with busybox in it (Docker's from busyboxRootfsTar in dockerd.ts, LXC's from the busybox
// template in lxc.ts), driven through a shell in it, `docker exec` or `lxc-attach`: ICMP with its own ping,
// and a byte-exact TCP transfer with its own nc and sha256sum, so what is measured is what the containers
// themselves send and receive.
//
// The transfer: the sender writes N random bytes to /tmp/tx and hashes them; the receiver listens with
// `nc -l -p PORT -e sh -c 'cat > /tmp/rx'` (busybox's nc closes when its own input ends, so its input must
// not be the terminal's: -e gives the connection to cat), under `timeout`, so it ends by itself; once
// netstat shows it listening, the sender sends /tmp/tx with nc; the receiver prints the count and the hash of
// what arrived. Both files are removed.
import type { Lab } from './netns.js';
import { run } from './exec.js';

export interface Box {
  /** For messages, e.g. "docker c1 on A". */
  readonly name: string;
  /** Its address on the fan. */
  readonly address: string;
  /** The argv that runs `sh -c script` inside it, from the root namespace. */
  sh(script: string): string[];
}

export interface BoxResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a shell script in a box; never throws for a non-zero exit. */
export async function boxRun(box: Box, script: string, timeoutMs = 30_000): Promise<BoxResult> {
  const r = await run(box.sh(script), { allowFail: true, timeoutMs });
  return { code: r.timedOut ? null : r.code, stdout: r.stdout, stderr: r.stderr };
}

/** `ping -c count` from a box; `received` counts the answers. */
export async function boxPing(from: Box, to: string, count = 3): Promise<{ received: number; output: string }> {
  const r = await boxRun(from, `ping -c ${count} -W 2 ${to}`, (count + 2) * 3000 + 10_000);
  const m = /(\d+) packets received/.exec(r.stdout);
  return { received: m ? Number(m[1]) : 0, output: `${r.stdout}${r.stderr}` };
}

/** Poll `what` until it holds, up to `ms`; false when it never did. */
async function until(what: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await what()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface BoxTransfer {
  bytes: number;
  sent: string;
  receivedBytes: number;
  received: string;
  match: boolean;
  seconds: number;
  /** What went wrong, when match is false. */
  detail?: string;
}

/** A byte-exact TCP transfer of `bytes` random bytes from one box to another (see the head of this file). */
export async function boxTransfer(lab: Lab, from: Box, to: Box, bytes: number, opts: { port?: number; deadlineMs?: number } = {}): Promise<BoxTransfer> {
  const port = opts.port ?? 7000 + Math.floor(Math.random() * 1000);
  const deadlineMs = opts.deadlineMs ?? 90_000;
  const made = await boxRun(from, `head -c ${bytes} /dev/urandom > /tmp/tx && sha256sum < /tmp/tx`, 60_000);
  const sent = made.stdout.split(/\s+/)[0] ?? '';
  if (made.code !== 0 || !/^[0-9a-f]{64}$/.test(sent)) throw new Error(`${from.name}: cannot make ${bytes} bytes to send: ${made.stderr}`);
  const receiver = lab.spawn(undefined, to.sh(
    `timeout ${Math.ceil(deadlineMs / 1000)} nc -l -p ${port} -e sh -c 'cat > /tmp/rx'; wc -c < /tmp/rx; sha256sum < /tmp/rx; rm -f /tmp/rx`,
  ));
  try {
    const listening = await until(async () => new RegExp(`:${port}\\s`).test((await boxRun(to, 'netstat -ltn', 10_000)).stdout), 15_000);
    if (!listening) throw new Error(`${to.name}: nc did not listen on port ${port} within 15 s:\n${receiver.tail()}`);
    const t0 = Date.now();
    const s = await boxRun(from, `nc ${to.address} ${port} < /tmp/tx; rc=$?; rm -f /tmp/tx; exit $rc`, deadlineMs);
    const ended = (await receiver.wait(20_000)) !== null; // killed (null) when it had not ended by then
    const seconds = (Date.now() - t0) / 1000;
    const out = receiver.lines.filter((l) => l.stream === 'stdout').map((l) => l.line.trim());
    const receivedBytes = Number(out[0] ?? NaN);
    const received = (out[1] ?? '').split(/\s+/)[0];
    const match = ended && receivedBytes === bytes && received === sent;
    const detail = match ? undefined : `sender exit ${s.code} ${s.stderr.trim()}; receiver ${ended ? `ended: ${out.join(' | ')}` : 'still running after 20 s'}`;
    return { bytes, sent, receivedBytes, received, match, seconds, ...(detail ? { detail } : {}) };
  } finally {
    await receiver.stop(5000);
    await boxRun(from, 'rm -f /tmp/tx', 10_000);
  }
}
