#!/usr/bin/env node
// .ci/run's summary and skip gate. Reads vitest's JSON report (the first argument) and prints one plain
// "vitest: N passed, N failed, N skipped" line, the allow-list of tests CI lets skip (with why), and every
// skipped test. Exits 1 when a test was skipped (skip, skipIf, todo, ctx.skip) that is not on the allow-list:
// CI runs as root on a machine set up by .ci/setup, so a test that skips there did not run where it must,
// and its green would say nothing. Exits 1 too when there is no report to read.
//
//   node .ci/skips.mjs REPORT.json
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

/**
 * Tests that CI lets skip on this machine: the file (relative to the repository) and the test's full name
 * (describe titles and its own, as vitest reports them, joined by spaces), with the reason. Empty: every
 * test must run.
 * @type {{ file: string; name: string; reason: string }[]}
 */
export const ALLOWED_SKIPS = [];

const RAN = new Set(['passed', 'failed']);

/** The gate's verdict on a parsed vitest JSON report: the lines to print and the exit code. */
export function gate(report, root = process.cwd(), allowed = ALLOWED_SKIPS) {
  const out = [];
  const skipped = [];
  for (const file of report.testResults ?? []) {
    const rel = relative(root, file.name);
    for (const t of file.assertionResults ?? []) {
      if (RAN.has(t.status)) continue;
      const ok = allowed.find((a) => a.file === rel && a.name === t.fullName);
      skipped.push({ where: `${rel} > ${[...(t.ancestorTitles ?? []), t.title].join(' > ')}`, status: t.status, ok });
    }
  }
  out.push(`vitest: ${report.numPassedTests} passed, ${report.numFailedTests} failed, ${skipped.length} skipped`);
  // A file whose hook (beforeAll) threw reports its tests as skipped, none as failed: say so.
  const broken = (report.testResults ?? []).filter((f) => f.status === 'failed' && !(f.assertionResults ?? []).some((t) => t.status === 'failed'));
  for (const f of broken) out.push(`FAILED outside its tests (a hook or the file itself; the reason is in vitest's output above): ${relative(root, f.name)}`);
  out.push(`skips allowed in CI (.ci/skips.mjs ALLOWED_SKIPS): ${allowed.length ? '' : 'none'}`);
  for (const a of allowed) out.push(`  ${a.file} > ${a.name}: ${a.reason}`);
  for (const s of skipped) out.push(`${s.ok ? 'skipped (allowed)' : 'SKIPPED, NOT ALLOWED'}: ${s.where} [${s.status}]${s.ok ? ` — ${s.ok.reason}` : ''}`);
  const bad = skipped.filter((s) => !s.ok).length;
  if (bad) out.push(`ci: FAIL — ${bad} test${bad === 1 ? '' : 's'} skipped that must run here (not on the allow-list); a skip here is not a pass`);
  return { lines: out, code: bad ? 1 : 0 };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  let report;
  try {
    report = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  } catch (e) {
    console.log(`ci: FAIL — no vitest report to read (${e.message.split('\n')[0]})`);
    process.exit(1);
  }
  const { lines, code } = gate(report);
  for (const l of lines) console.log(l);
  process.exit(code);
}
