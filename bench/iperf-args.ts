// The bench's command line (bench/iperf.ts): what to run, how long, and where to write the results.
import os from 'node:os';
import type { FanTopology } from '../src/lab/topology.js';
import { ALL_PATHS, QUICK_PATHS, pathByName, type PathInstance } from './paths/index.js';
import { TESTS, type TestName } from './report.js';

export interface BenchOptions {
  paths: string[];
  tests: TestName[];
  repeat: number;
  seconds: number;
  quick: boolean;
  workers: number;
  json?: string;
  svg?: string;
  markdown?: string;
  /** Before each run wait up to this many seconds for the machine to be quiet (0: don't). */
  waitQuiet: number;
  /** 'uml': also measure kernel ipip against its own plain ceiling inside user-mode Linux (this kernel has none). */
  kernelIpip?: 'uml';
  log: (line: string) => void;
  /** Called with each path's topology and instance once set up (tests inspect them). */
  onSetup?: (path: string, topo: FanTopology, inst: PathInstance) => void | Promise<void>;
}

const USAGE = `usage: npm run bench -- [options]
  --quick            short run (1 s per test, 2 rounds) of the paths a user compares: ${QUICK_PATHS.join(', ')}
                     (the plain link as the ceiling, the kernel's tunnels, another user-space tunnel, and the
                     choices a userfan user makes: the defaults, one worker per host, --send raw, and the VXLAN
                     type); a path this machine lacks is skipped
  --paths a,b,...    data paths (default: all, quick: as above) — ${ALL_PATHS.map((p) => p.name).join(', ')}
  --tests a,b,...    tests (default: all) — ${TESTS.join(', ')}
  --repeat N         rounds; each round runs every path once (default 3, quick 2)
  --seconds S        iperf3 duration per run (default 5, quick 1)
  --workers N        userfan workers for the "userfan" and "userfan-raw" paths (default: cores)
  --wait-quiet S     before each run wait up to S s for the machine to be idle (shared machines)
  --json FILE        write machine-readable results
  --svg FILE         write a bar chart
  --markdown FILE    write the tables as Markdown
  --kernel-ipip uml  also measure kernel ipip inside user-mode Linux (relative to its own plain
                     ceiling there; for kernels without ipip; see bench/paths/kernel-ipip-uml.ts)`;

export function parseArgs(argv: string[]): BenchOptions {
  let paths: string[] | undefined;
  const o: BenchOptions = {
    paths: [],
    tests: [...TESTS],
    repeat: 0,
    seconds: 0,
    quick: false,
    workers: os.cpus().length,
    waitQuiet: 0,
    log: (l) => console.log(l),
  };
  const val = (i: number, name: string) => {
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value\n${USAGE}`);
    return v;
  };
  const int = (s: string, name: string, min: number, max: number) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name}: an integer ${min}..${max}, got ${s}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--quick':
        o.quick = true;
        break;
      case '--json':
        o.json = val(i++, a);
        break;
      case '--svg':
        o.svg = val(i++, a);
        break;
      case '--markdown':
        o.markdown = val(i++, a);
        break;
      case '--paths': {
        const names = val(i++, a).split(',').map((s) => s.trim()).filter(Boolean);
        for (const n of names) if (!pathByName(n)) throw new Error(`unknown path ${n}; known: ${ALL_PATHS.map((p) => p.name).join(', ')}`);
        paths = names;
        break;
      }
      case '--tests': {
        const names = val(i++, a).split(',').map((s) => s.trim()).filter(Boolean);
        for (const n of names) if (!TESTS.includes(n as TestName)) throw new Error(`unknown test ${n}; known: ${TESTS.join(', ')}`);
        o.tests = names as TestName[];
        break;
      }
      case '--repeat':
        o.repeat = int(val(i++, a), a, 1, 100);
        break;
      case '--seconds':
        o.seconds = int(val(i++, a), a, 1, 600);
        break;
      case '--kernel-ipip': {
        const v = val(i++, a);
        if (v !== 'uml') throw new Error(`--kernel-ipip: only "uml" is supported, got ${v}`);
        o.kernelIpip = 'uml';
        break;
      }
      case '--wait-quiet':
        o.waitQuiet = int(val(i++, a), a, 0, 3600);
        break;
      case '--workers':
        o.workers = int(val(i++, a), a, 1, 256);
        break;
      case '-h':
      case '--help':
        throw new Error(USAGE);
      default:
        throw new Error(`unknown option ${a}\n${USAGE}`);
    }
  }
  o.paths = paths ?? (o.quick ? [...QUICK_PATHS] : ALL_PATHS.map((p) => p.name));
  if (!o.repeat) o.repeat = o.quick ? 2 : 3;
  if (!o.seconds) o.seconds = o.quick ? 1 : 5;
  return o;
}
