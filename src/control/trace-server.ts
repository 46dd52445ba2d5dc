/**
 * The daemon's side of `userfan trace`: on a control-socket connection that asked for a trace, turn the
 * workers' tracing on, drain their rings every few milliseconds and stream the copies as frames until
 * the count, the time limit or the client ends it; then turn tracing off again. One trace at a time.
 *
 * Stream: TRACE_MAGIC, then frames of FRAME_HEADER bytes (u32 LE each: captured length, original length,
 * seconds, microseconds, direction | verdict << 8) and the captured bytes; then a frame whose captured
 * length is END, followed by a JSON trailer {packets, dropped}. A request that cannot be served gets one
 * JSON line {error} instead.
 */
import type { Socket } from 'node:net';
import type { DataPlane } from '../dataplane/pool.js';
import type { TraceRecord } from '../io/trace-ring.js';
import { formatIPv4 } from '../fan/addr.js';

export const TRACE_MAGIC = Buffer.from('UFTRACE1');
export const FRAME_HEADER = 20;
export const END = 0xffffffff;
export const MAX_COUNT = 1_000_000;
export const MAX_SECONDS = 86_400;
const DRAIN_MS = 10;
/** Copies the client has not taken yet, at most; beyond that they are dropped (and counted). */
const MAX_QUEUED = 32 << 20;

export interface TraceRequest {
  cmd: 'trace';
  count: number;
  seconds: number;
  /** uint32 address to match against outer and inner sources and destinations; 0 = everything. */
  filter: number;
}

function frame(r: TraceRecord): Buffer {
  const f = Buffer.allocUnsafe(FRAME_HEADER + r.bytes.length);
  f.writeUInt32LE(r.bytes.length, 0);
  f.writeUInt32LE(r.originalLength, 4);
  f.writeUInt32LE(r.seconds, 8);
  f.writeUInt32LE(r.micros, 12);
  f.writeUInt32LE(r.direction | (r.verdict << 8), 16);
  f.set(r.bytes, FRAME_HEADER);
  return f;
}

/** Checks a request's bounds: an error message, or undefined. */
export function badTraceRequest(req: Partial<TraceRequest>): string | undefined {
  if (!Number.isInteger(req.count) || req.count! < 1 || req.count! > MAX_COUNT) return `count must be an integer 1..${MAX_COUNT}`;
  if (typeof req.seconds !== 'number' || !(req.seconds > 0) || req.seconds > MAX_SECONDS) return `seconds must be a number in (0, ${MAX_SECONDS}]`;
  if (!Number.isInteger(req.filter) || req.filter! < 0 || req.filter! > 0xffffffff) return 'filter must be a uint32 address (0 = every packet)';
  return undefined;
}

export function serveTrace(conn: Socket, plane: DataPlane, req: TraceRequest, log: (event: string, fields?: Record<string, unknown>) => void, daemon: string): void {
  const bad = badTraceRequest(req);
  if (bad) {
    conn.end(`${JSON.stringify({ error: `trace: ${bad}` })}\n`);
    return;
  }
  if (!plane.traceable) {
    conn.end(`${JSON.stringify({ error: `trace: ${daemon} runs with --no-trace` })}\n`);
    return;
  }
  if (!plane.startTrace(req.filter)) {
    conn.end(`${JSON.stringify({ error: `trace: a trace is already attached to ${daemon} (one at a time)` })}\n`);
    return;
  }
  const droppedBefore = plane.traceDropped;
  let packets = 0;
  let lost = 0;
  let ended = false;
  log('trace-attached', { count: req.count, seconds: req.seconds, filter: req.filter ? formatIPv4(req.filter) : 'all' });
  conn.write(TRACE_MAGIC);

  const drain = () =>
    plane.drainTrace((r) => {
      if (packets >= req.count) return;
      if (conn.writableLength > MAX_QUEUED) {
        lost++;
        return;
      }
      conn.write(frame(r));
      packets++;
    });

  const end = (why: string) => {
    if (ended) return;
    ended = true;
    clearInterval(timer);
    clearTimeout(limit);
    drain();
    plane.stopTrace();
    const dropped = plane.traceDropped - droppedBefore + lost;
    log('trace-detached', { packets, dropped, why });
    if (conn.destroyed) return;
    const tail = Buffer.alloc(FRAME_HEADER);
    tail.writeUInt32LE(END, 0);
    conn.end(Buffer.concat([tail, Buffer.from(JSON.stringify({ packets, dropped }))]));
  };

  const timer = setInterval(() => {
    drain();
    if (packets >= req.count) end('count');
  }, DRAIN_MS);
  const limit = setTimeout(() => end('seconds'), req.seconds * 1000);
  conn.on('close', () => end('client'));
  conn.on('error', () => end('client'));
}
