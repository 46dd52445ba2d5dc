/**
 * A byte-exact TCP transfer for the lab: `serve` accepts one connection, hashes everything it receives
 * and prints {"bytes", "sha256"}; `send` streams N bytes of deterministic pseudo-random data, hashing
 * what it sends, and prints {"bytes", "sha256", "seconds", "gbps"}. Both sides' hashes must match.
 * Every run is bounded: the server exits after one connection or its deadline, the client after its own.
 *
 *   ip netns exec C2 node dist/src/lab/transfer.js serve 0.0.0.0 7000 [--deadline-ms 60000]
 *   ip netns exec C1 node dist/src/lab/transfer.js send 250.0.27.3 7000 67108864 [--deadline-ms 60000]
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, connect } from 'node:net';

/** The sender repeats one random block: generating data must not be what limits the transfer. */
const BLOCK = 1 << 20;

function deadline(ms: number, what: string): NodeJS.Timeout {
  return setTimeout(() => {
    console.log(JSON.stringify({ error: `${what}: deadline of ${ms} ms passed` }));
    process.exit(3);
  }, ms);
}

export function serve(host: string, port: number, deadlineMs: number): void {
  const timer = deadline(deadlineMs, 'serve');
  const server = createServer((sock) => {
    server.close();
    const h = createHash('sha256');
    let bytes = 0;
    sock.on('data', (d) => {
      bytes += d.length;
      h.update(d);
    });
    sock.on('end', () => {
      sock.end();
      clearTimeout(timer);
      console.log(JSON.stringify({ bytes, sha256: h.digest('hex') }));
    });
    sock.on('error', (e) => {
      console.log(JSON.stringify({ error: e.message, bytes }));
      process.exit(1);
    });
  });
  server.listen(port, host, () => console.log(JSON.stringify({ listening: port })));
}

export function send(host: string, port: number, total: number, deadlineMs: number): void {
  const timer = deadline(deadlineMs, 'send');
  const h = createHash('sha256');
  const block = randomBytes(BLOCK);
  let sent = 0;
  const t0 = process.hrtime.bigint();
  const sock = connect({ host, port }, () => {
    const pump = () => {
      while (sent < total) {
        const piece = total - sent >= BLOCK ? block : block.subarray(0, total - sent);
        h.update(piece);
        sent += piece.length;
        if (!sock.write(piece)) {
          sock.once('drain', pump);
          return;
        }
      }
      sock.end();
    };
    pump();
  });
  sock.on('close', (hadError) => {
    clearTimeout(timer);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    if (hadError) process.exit(1);
    console.log(JSON.stringify({ bytes: sent, sha256: h.digest('hex'), seconds, gbps: (sent * 8) / seconds / 1e9 }));
  });
  sock.on('error', (e) => {
    console.log(JSON.stringify({ error: e.message, bytes: sent }));
  });
  sock.resume(); // the server sends nothing but FIN; consume it so 'close' fires
}

const [, , mode, host, port, bytes] = process.argv;
const dl = process.argv.indexOf('--deadline-ms');
const deadlineMs = dl > 0 ? Number(process.argv[dl + 1]) : 60_000;
if (import.meta.url === `file://${process.argv[1]}`) {
  if (mode === 'serve') serve(host, Number(port), deadlineMs);
  else if (mode === 'send') send(host, Number(port), Number(bytes), deadlineMs);
  else {
    console.error('usage: transfer.js serve HOST PORT | send HOST PORT BYTES [--deadline-ms N]');
    process.exit(2);
  }
}
