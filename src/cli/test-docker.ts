/**
 * `userfan test local-docker [-o OVERLAY -u UNDERLAY] [--image IMAGE] [-H DOCKER_HOST]`: fanatic's self-test,
 * for a Docker that enable-docker pointed at this host's fan (and that was restarted since). Two containers
 * from IMAGE (any image with busybox: sh, dd, nc, md5sum, ping; default `busybox`), each must have an
 * address in this host's slice and the fan's MTU; one pings the other and the bridge, then sends it 1 MiB of
 * random bytes over TCP (nc) and the MD5s are compared. The last line says PASS or FAIL and why; exit
 * 0 or 1. The containers are removed at the end, and stop by themselves (--rm, a bounded sleep) within
 * two minutes if this process dies first.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatCidr, formatIPv4, parseIPv4, prefixMask } from '../fan/addr.js';
import { ConfigError } from '../fan/errors.js';
import { parseCidr, parseOverlay, parseUnderlay } from '../fan/parse.js';
import { daemonAlive, readStates, type FanRecord } from '../control/state.js';
import { run } from '../io/exec.js';
import { UsageError } from './fans-from-args.js';

const USAGE = 'usage: userfan test local-docker [-o OVERLAY -u UNDERLAY] [--image IMAGE] [-H DOCKER_HOST]';
const BYTES = 1 << 20;
/** How long a test container lives at most (s): it ends by itself if nobody removes it. */
const LIFETIME_S = 120;
const PORT = 8080;

/** A failed step: the message ends up on the FAIL line. */
class Failure extends Error {}

/** The fan to test: the one -o/-u name, or the only one up here. */
function pickFan(overlay?: string, underlay?: string): FanRecord {
  if ((overlay === undefined) !== (underlay === undefined)) throw new UsageError(`give both -o and -u, or neither; ${USAGE}`);
  const want = overlay !== undefined && underlay !== undefined
    ? { o: formatCidr(parseOverlay(overlay).net, parseOverlay(overlay).len), u: parseUnderlay(underlay).prefix }
    : undefined;
  const up = readStates().filter((s) => daemonAlive(s)).flatMap((s) => s.fans);
  const fans = want ? up.filter((f) => f.overlay === want.o && f.underlay === formatCidr(want.u.net, want.u.len)) : up;
  if (fans.length === 0) throw new Failure(`${want ? `${overlay} over ${underlay} is not up` : 'no fan is up'} in this network namespace (userfan show): bring it up first`);
  if (fans.length > 1) throw new UsageError(`${fans.length} fans are up here: name one with -o and -u; ${USAGE}`);
  return fans[0];
}

type Docker = (argv: string[], timeoutMs?: number) => Promise<{ code: number | null; out: string; err: string }>;

function dockerRunner(host: string | undefined): Docker {
  return async (argv, timeoutMs = 30_000) => {
    try {
      const r = await run(['docker', ...(host ? ['-H', host] : []), ...argv], { allowFail: true, timeoutMs });
      return { code: r.timedOut ? null : r.code, out: r.stdout.trim(), err: (r.stderr.trim().split('\n').pop() ?? '') || (r.timedOut ? `timed out after ${timeoutMs} ms` : '') };
    } catch (e) {
      throw new Failure(`cannot run docker: ${(e as Error).message}`);
    }
  };
}

/** Start the two containers; returns their addresses, each checked against the slice. */
async function startContainers(docker: Docker, image: string, names: string[], fan: FanRecord): Promise<string[]> {
  // The first receives into /tmp/data (busybox nc closes when its input ends: the sleep keeps it open), the
  // second makes BYTES random bytes to send; both end by themselves after LIFETIME_S.
  const cmds = [
    ['sh', '-c', `sleep ${LIFETIME_S} | nc -l -p ${PORT} > /tmp/data`],
    ['sh', '-c', `dd if=/dev/urandom of=/tmp/data bs=1024 count=${BYTES / 1024} 2>/dev/null; sleep ${LIFETIME_S}`],
  ];
  const addrs: string[] = [];
  const slice = parseCidr('slice', fan.slice);
  for (const [i, name] of names.entries()) {
    const r = await docker(['run', '-d', '--rm', '--name', name, image, ...cmds[i]], 120_000);
    if (r.code !== 0) throw new Failure(`cannot start a container from ${image}: ${r.err}`);
    const a = await docker(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}', name]);
    const addr = a.out.split(/\s+/)[0] ?? '';
    if (!addr) throw new Failure(`container ${name} got no address: Docker is not on the fan (userfan enable-docker, then restart Docker)`);
    if (((parseIPv4(addr) & prefixMask(slice.len)) >>> 0) !== slice.address) {
      throw new Failure(`container ${name} got ${addr}, outside this host's slice ${fan.slice}: Docker is not on the fan (userfan enable-docker, then restart Docker)`);
    }
    addrs.push(addr);
  }
  return addrs;
}

/** The checks, each printed as it passes; throws Failure at the first that does not. */
async function checks(docker: Docker, names: string[], addrs: string[], fan: FanRecord, say: (s: string) => void): Promise<void> {
  let mtu: string;
  try {
    mtu = readFileSync(`/sys/class/net/${fan.bridge}/mtu`, 'utf8').trim();
  } catch (e) {
    throw new Failure(`the fan's bridge ${fan.bridge} cannot be read here (${(e as NodeJS.ErrnoException).code}): is the fan up?`);
  }
  for (const name of names) {
    const m = await docker(['exec', name, 'cat', '/sys/class/net/eth0/mtu']);
    if (m.out !== mtu) throw new Failure(`container ${name} has MTU ${m.out || '?'}, the fan ${mtu}: Docker's mtu is not the fan's (userfan enable-docker, then restart Docker)`);
  }
  say(`containers ${addrs[0]} and ${addrs[1]} on ${fan.bridge}, MTU ${mtu}`);
  const bridgeAddress = formatIPv4((parseCidr('slice', fan.slice).address + 1) >>> 0);
  for (const [from, to, what] of [[1, addrs[0], addrs[0]], [0, bridgeAddress, `${bridgeAddress} (the bridge)`]] as const) {
    const p = await docker(['exec', names[from], 'ping', '-c', '3', '-W', '2', to]);
    if (p.code !== 0) throw new Failure(`ping ${addrs[from]} -> ${what}: no answer (${p.out.split('\n').pop() || p.err})`);
    say(`ping ${addrs[from]} -> ${what}: ok`);
  }
  const send = await docker(['exec', names[1], 'sh', '-c', `for i in 1 2 3 4 5; do nc ${addrs[0]} ${PORT} < /tmp/data && exit 0; sleep 1; done; exit 1`], 60_000);
  const wait = `for i in $(seq 50); do [ "$(wc -c < /tmp/data)" -ge ${BYTES} ] && break; sleep 0.2; done; wc -c < /tmp/data; md5sum < /tmp/data`;
  const got = await docker(['exec', names[0], 'sh', '-c', wait], 30_000);
  const sent = await docker(['exec', names[1], 'md5sum', '/tmp/data']);
  const [bytes, md5] = got.out.split(/\s+/);
  const want = sent.out.split(/\s+/)[0];
  if (Number(bytes) !== BYTES || !want || md5 !== want) {
    const why = send.code !== 0 ? `nc could not send (${send.err || `exit ${send.code}`})` : `${Number(bytes) || 0} of ${BYTES} bytes arrived${md5 && want && Number(bytes) === BYTES ? ', md5 differs' : ''}`;
    throw new Failure(`data ${addrs[1]} -> ${addrs[0]}: ${why}`);
  }
  say(`data ${addrs[1]} -> ${addrs[0]}: ${BYTES} bytes, md5 equal`);
}

export async function testCommand(args: string[]): Promise<number> {
  const [what, ...rest] = args;
  if (what !== 'local-docker') throw new UsageError(USAGE);
  let values;
  try {
    values = parseArgs({ args: rest, strict: true, options: { overlay: { type: 'string', short: 'o' }, underlay: { type: 'string', short: 'u' }, image: { type: 'string' }, host: { type: 'string', short: 'H' } } }).values;
  } catch (e) {
    throw new UsageError(`${(e as Error).message.replace(/\. To specify.*$/s, '')}; ${USAGE}`);
  }
  const image = values.image ?? 'busybox';
  if (!/^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$/.test(image)) throw new ConfigError('--image', image, 'must be a Docker image reference, e.g. busybox or busybox:1.36');
  const say = (s: string) => console.log(`local docker test: ${s}`);
  const docker = dockerRunner(values.host);
  const names = [1, 2].map((i) => `userfan-test-${process.pid}-${i}`);
  let started = false;
  try {
    const fan = pickFan(values.overlay, values.underlay);
    const v = await docker(['version', '--format', '{{.Server.Version}}']);
    if (v.code !== 0) throw new Failure(`cannot reach the Docker daemon: ${v.err}`);
    started = true;
    const addrs = await startContainers(docker, image, names, fan);
    await checks(docker, names, addrs, fan, say);
    say(`PASS (${fan.overlay} over ${fan.underlay}, bridge ${fan.bridge}: ${addrs[0]} and ${addrs[1]} ping and carry ${BYTES} bytes intact)`);
    return 0;
  } catch (e) {
    if (!(e instanceof Failure)) throw e;
    say(`FAIL: ${e.message}`);
    return 1;
  } finally {
    if (started) await docker(['rm', '-f', ...names]).catch(() => undefined);
  }
}
