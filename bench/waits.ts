/**
 * How long the waits take: the figures the tests used to assert and now leave to a bench (tests assert
 * behaviour; timing lives here). Reported, not judged: median and range over --rounds.
 *
 *   poller (no root): the addon's poll() wrapper (src/io/poll.ts) on an eventfd nobody writes to —
 *     wait(30) with nothing ready (ms), wait(-1) (capped at WAIT_MAX_MS), a wait on a woken eventfd (µs),
 *     a busy look of up to 30 ms with nothing ready (ms), and what poller.times says a wait(20) took (µs).
 *   idle (root, namespace lab): an idle daemon with two workers — wake-ups per second of all its threads
 *     (voluntary context switches, /proc/PID/task/TID/status) after traffic stopped, and how long an idle
 *     worker killed by `debug crash-worker` takes to be replaced (the daemon's worker-replaced `ms`).
 *
 *   npm run build && node dist/bench/waits.js [--rounds 10] [--only poller,idle] [--json]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { native } from '../src/io/native.js';
import { Poller, Waker } from '../src/io/poll.js';
import { createUserfanLab } from '../src/lab/userfan-lab.js';
import { round, stat, type Stat } from './report.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Figures = Record<string, Stat>;

function rounded(s: Stat, digits = 2): Stat {
  return { median: round(s.median, digits), min: round(s.min, digits), max: round(s.max, digits) };
}

/** The poller's waits, each timed on the monotonic clock, `rounds` times. */
export function pollerFigures(rounds: number): Figures {
  const waker = new Waker();
  const poller = new Poller();
  const w = poller.add(waker.fd);
  const xs: Record<string, number[]> = { 'wait(30) idle, ms': [], 'wait(-1) idle, ms': [], 'wait on a woken eventfd, µs': [], 'busy look 30 ms, nothing ready, ms': [], 'poller.times of wait(20), µs': [] };
  try {
    for (let i = 0; i < rounds; i++) {
      let t0 = performance.now();
      poller.wait(30);
      xs['wait(30) idle, ms'].push(performance.now() - t0);
      t0 = performance.now();
      poller.wait(-1);
      xs['wait(-1) idle, ms'].push(performance.now() - t0);
      waker.wake();
      t0 = performance.now();
      if (poller.wait(5000) !== 1 || !poller.readable(w)) throw new Error('the woken eventfd was not readable');
      xs['wait on a woken eventfd, µs'].push((performance.now() - t0) * 1000);
      waker.clear();
      t0 = performance.now();
      poller.wait(0, 30_000);
      xs['busy look 30 ms, nothing ready, ms'].push(performance.now() - t0);
      poller.wait(20);
      xs['poller.times of wait(20), µs'].push(poller.times[1] - poller.times[0]);
    }
  } finally {
    waker.close();
  }
  return Object.fromEntries(Object.entries(xs).map(([k, v]) => [k, rounded(stat(v))]));
}

/** Voluntary context switches of every thread of `pid` so far. */
function switches(pid: number): number {
  let n = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      n += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      /* a thread that ended meanwhile */
    }
  }
  return n;
}

/** An idle two-worker daemon: wake-ups per second over 2 s windows, and idle-worker replacement times. */
export async function idleFigures(rounds: number): Promise<Figures> {
  const logs: string[] = [];
  const lab = await createUserfanLab({ workers: 2, onLog: (h, l) => logs.push(`${h} ${l}`) });
  try {
    const [A] = lab.hosts;
    const [[a], [b]] = lab.containers;
    const pid = (await lab.show(A))[0].pid as number;
    await lab.topo.exec(a, ['ping', '-c', '5', '-i', '0.01', '-q', b.address]);
    await sleep(500); // the last busy looks are over
    const perSecond: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const n0 = switches(pid);
      const t0 = performance.now();
      await sleep(2000);
      perSecond.push(((switches(pid) - n0) * 1000) / (performance.now() - t0));
    }
    const replaced: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const seen = logs.filter((l) => l.startsWith('A ') && l.includes('"event":"worker-replaced"')).length;
      await lab.cli(A, ['debug', 'crash-worker', String(i % 2)]);
      for (let k = 0; k < 500; k++) {
        const now = logs.filter((l) => l.startsWith('A ') && l.includes('"event":"worker-replaced"'));
        if (now.length > seen) {
          const line = now.at(-1)!;
          replaced.push((JSON.parse(line.slice(line.indexOf('{'))) as { ms: number }).ms);
          break;
        }
        await sleep(20);
      }
      await sleep(300); // the new worker settles into its idle wait
    }
    return {
      'idle daemon (2 workers), wake-ups per second': rounded(stat(perSecond), 1),
      'idle worker replaced after a crash, ms': rounded(stat(replaced), 1),
    };
  } finally {
    await lab.destroy();
  }
}

export async function main(): Promise<number> {
  const rounds = Number(arg('rounds', '10'));
  const only = arg('only', 'poller,idle').split(',');
  const out: Figures = {};
  if (only.includes('poller')) Object.assign(out, pollerFigures(rounds));
  if (only.includes('idle')) {
    if (process.getuid?.() !== 0) throw new Error('waits --only idle builds a namespace lab: run as root');
    Object.assign(out, await idleFigures(Math.min(rounds, 5)));
  }
  if (process.argv.includes('--json')) console.log(JSON.stringify({ rounds, waitMaxMs: native().WAIT_MAX_MS, figures: out }));
  else for (const [k, s] of Object.entries(out)) console.log(`${k.padEnd(48)} median ${s.median}  range ${s.min} – ${s.max}`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (e) => {
      console.error(e instanceof Error ? e.stack : e);
      process.exit(1);
    },
  );
}
