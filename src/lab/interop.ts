// `npm run interop`: userfan against the real Linux ipip driver, on the wire, both ways.
//
// Proves in both directions: ICMP echo, UDP, TCP of 16 MiB byte-exact (sha256 at both ends); that B's kernel
// decapsulated with ipip (tunl0 counters, IP-in-IP seen on the wire); that with TX GSO (the default
// --send gso) TCP super-packets left whole and the kernel cut them on the way out; and that a spoofed packet
// (inner source outside the sending host's slice) is dropped by userfan and not delivered by the kernel
// either (strict rp_filter, no route back to the claimed source). Prints one summary line last; exits 0 only
// if all hold.
//
// The lab and its topology: interop-lab.ts; the traffic checks: interop-traffic.ts; the spoofing checks:
// interop-spoof.ts.
//
//   node dist/src/lab/interop.js [--send gso|raw] [--keep-offload] [--json]
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { InteropLab, type InteropCheck, type InteropOptions } from './interop-lab.js';
import { spoofChecks } from './interop-spoof.js';
import { tcpChecks, udpChecks, wireChecks } from './interop-traffic.js';
import { UML_BIN, UML_INSTALL_HINT, umlMissing } from './uml-kernel.js';

export type { InteropCheck, InteropOptions } from './interop-lab.js';

export interface InteropResult {
  checks: InteropCheck[];
  ok: boolean;
  summary: string;
}

/** Unless every packet goes through the raw socket (--send raw), TCP super-packets leave whole: TX GSO. */
async function txGsoCheck(t: InteropLab): Promise<void> {
  if (/(^| )--send raw( |$)/.test((t.opts.userfanArgs ?? []).join(' '))) return;
  await t.step('TX GSO', async () => {
    const st = ((await t.userfanJson(['stats', '--json', '--interval', '100'])) as { txGso?: string | null; total: { txGsoFrames: number } }[])[0];
    return { ok: !!st.txGso?.startsWith('on') && st.total.txGsoFrames > 0, detail: `TX GSO ${st.txGso}: ${st.total.txGsoFrames} super-packets left whole; the kernel cut them at ${t.vethA}` };
  });
}

async function runChecks(t: InteropLab): Promise<void> {
  await t.setup();
  const t0 = await t.tunl0();
  const u0 = await t.userfanCounters();
  await wireChecks(t);
  await udpChecks(t);
  await tcpChecks(t);
  await txGsoCheck(t);
  const t1 = await t.tunl0();
  const u1 = await t.userfanCounters();
  // packet counts are lower than bytes/MSS: GRO merges ipip-decapsulated TCP segments; bytes are exact enough
  const tcpBytes = t.opts.tcpBytes ?? 16 * 1024 * 1024;
  t.check(
    'kernel ipip counters',
    t1.rxBytes - t0.rxBytes >= tcpBytes && t1.txBytes - t0.txBytes >= tcpBytes && t1.rxErrors === 0,
    `B's tunl0 decapsulated ${t1.rxPackets - t0.rxPackets} packets (${((t1.rxBytes - t0.rxBytes) / 1048576).toFixed(1)} MiB) and encapsulated ` +
      `${t1.txPackets - t0.txPackets} (${((t1.txBytes - t0.txBytes) / 1048576).toFixed(1)} MiB), rx errors ${t1.rxErrors}; userfan rx +${u1.rx - u0.rx}, tx +${u1.tx - u0.tx}`,
  );
  await spoofChecks(t);
  await t.step('userfan stops cleanly', async () => {
    await t.userfan!.stop(10_000);
    const code = t.userfan!.exitCode;
    const br = await t.lab.exec(t.hostA.ns, ['ip', 'link', 'show', 'dev', t.hostA.slice.bridge], { allowFail: true });
    return { ok: code === 0 && br.code !== 0, detail: `SIGTERM: exit ${code}, bridge ${t.hostA.slice.bridge} ${br.code !== 0 ? 'removed' : 'still there'}` };
  });
}

export function summarize(checks: InteropCheck[], kernel = '6.1'): string {
  const real = checks.filter((c) => !c.info);
  const failed = real.filter((c) => !c.ok);
  const ok = failed.length === 0 && real.length > 0;
  const names = (cs: InteropCheck[]) => cs.map((c) => c.name).join(', ');
  return ok
    ? `interop: PASS ${real.length}/${real.length} — userfan ⇄ Linux ${kernel} kernel ipip (user-mode Linux): ICMP, UDP, TCP 16 MiB byte-exact both ways; tunl0 decapsulated; spoofed (inner source outside the sender's slice) dropped by both`
    : `interop: FAIL ${failed.length}/${real.length} — failed: ${names(failed)}`;
}

export async function runInterop(opts: InteropOptions = {}): Promise<InteropResult> {
  const t = new InteropLab(opts);
  try {
    await runChecks(t);
  } catch (e) {
    t.check('lab', false, (e as Error).message.split('\n').slice(0, 12).join(' | '));
    if (t.userfan) opts.log?.(`userfan output (tail):\n${t.userfan.tail(15)}`);
  } finally {
    await t.destroy();
  }
  const real = t.checks.filter((c) => !c.info);
  const ok = real.length > 0 && real.every((c) => c.ok);
  return { checks: t.checks, ok, summary: summarize(t.checks, t.kernel) };
}

let interrupted: string | undefined;

async function main(): Promise<number> {
  const missing = umlMissing();
  if (missing) {
    console.error(`interop needs user-mode Linux (a real kernel with ipip; this kernel has none): ${missing}`);
    const cannotBoot = existsSync(UML_BIN) && /cannot run a program|did not finish booting/.test(missing);
    if (!cannotBoot) console.error(`install it with: ${UML_INSTALL_HINT}`);
    console.log(`interop: NOT RUN — ${cannotBoot ? 'user-mode Linux cannot boot here' : 'user-mode-linux is missing'}`);
    return 2;
  }
  const args = process.argv.slice(2);
  // The lab's own SIGINT/SIGTERM hooks tear everything down and exit; say so instead of a misleading summary.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      interrupted = sig;
      process.once('exit', () => console.log(`interop: INTERRUPTED by ${sig} — lab torn down, nothing proven`));
    });
  }
  const send = args.indexOf('--send');
  const r = await runInterop({
    keepOffload: args.includes('--keep-offload'),
    userfanArgs: send >= 0 ? ['--send', args[send + 1] ?? ''] : [],
    log: (m) => console.log(m),
  });
  if (interrupted) return 130;
  if (args.includes('--json')) console.log(JSON.stringify(r.checks));
  console.log(r.summary);
  return r.ok ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (e) => {
      console.error(e instanceof Error ? e.stack : e);
      console.log('interop: FAIL — ' + (e instanceof Error ? e.message.split('\n')[0] : String(e)));
      process.exit(1);
    },
  );
}
