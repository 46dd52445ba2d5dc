/**
 * The daemon's timestamps (its log lines, its state file's startedAt) as `Date.prototype.toISOString()`
 * writes them, from the UTC fields alone.
 *
 * V8's toISOString looks up the local time zone's display name before it formats anything, although an
 * ISO time in UTC never shows it; the first call loads ICU's time-zone data and code, about 0.9 MiB that
 * then stay resident in the daemon for its whole life (issue 22: RSS per daemon; measured with
 * bench/scale.ts). The UTC getters need no time zone.
 */
const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** `new Date(ms).toISOString()` for the years 0 to 9999 (the daemon's clock is in them). */
export function isoTime(ms: number = Date.now()): string {
  const d = new Date(ms);
  const date = `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  return `${date}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}Z`;
}
