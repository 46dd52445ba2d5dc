// The interop lab's traffic checks, both ways between A's container and B's: ICMP echo, IP-in-IP on the
// wire, a UDP datagram, and a TCP transfer whose sha256 must match at both ends.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { A_C, A_UL, B_C, B_UL, pollFor, sleep, type InteropLab } from './interop-lab.js';

async function pingChecks(t: InteropLab): Promise<void> {
  await t.step('ICMP A→B', async () => {
    const r = await t.topo.ping(t.ca, B_C, { count: 3, timeoutS: 3 });
    return { ok: r.ok && r.received === 3, detail: `${A_C} → ${B_C}: ${r.received}/3 replies${r.rttMs !== undefined ? `, rtt ${r.rttMs} ms` : ''}` };
  });
  await t.step('ICMP B→A', async () => {
    const r = await t.guest.exec(`ip netns exec c0 ping -n -q -c 3 -i 0.2 -W 3 ${A_C}`, { timeoutMs: 20_000 });
    const m = /(\d+) received/.exec(r.output);
    return { ok: r.code === 0 && m?.[1] === '3', detail: `${B_C} → ${A_C}: ${m?.[1] ?? 0}/3 replies` };
  });
}

/** ICMP echo both ways, and the wire at the kernel host's end of the veth meanwhile: IP-in-IP both ways. */
export async function wireChecks(t: InteropLab): Promise<void> {
  const wire = t.lab.spawn(t.nsB, ['timeout', '60', 'tcpdump', '-l', '-n', '-i', t.vethB, 'ip proto 4']);
  await wire.waitForLine(/listening on/, 10_000);
  await pingChecks(t);
  await wire.stop();
  await t.step('IP-in-IP on the wire', async () => {
    const lines = wire.lines.filter((l) => l.stream === 'stdout').map((l) => l.line);
    const ab = lines.filter((l) => l.includes(`${A_UL} > ${B_UL}:`) && l.includes(`${A_C} > ${B_C}: ICMP echo request`)).length;
    const ba = lines.filter((l) => l.includes(`${B_UL} > ${A_UL}:`) && l.includes(`${B_C} > ${A_C}: ICMP echo reply`)).length;
    return { ok: ab >= 3 && ba >= 3, detail: `on ${t.vethB}: ${ab} requests ${A_UL}→${B_UL} and ${ba} replies ${B_UL}→${A_UL} as IPv4 protocol 4` };
  });
}

export async function udpChecks(t: InteropLab): Promise<void> {
  await t.step('UDP A→B', async () => {
    const token = randomBytes(600).toString('hex'); // 1200 bytes
    await t.guest.execOk(`(timeout 30 ip netns exec c0 socat -u UDP4-RECVFROM:5301,bind=${B_C} STDOUT > /tmp/udp1.txt 2>&1 &) ; for i in $(seq 100); do ip netns exec c0 ss -lun | grep -q ':5301 ' && exit 0; sleep 0.05; done; exit 1`);
    const got = await pollFor('datagram at B', 15_000, async () => {
      await t.lab.exec(t.ca.ns, ['sh', '-c', `printf %s "$0" | socat -u STDIN UDP4-SENDTO:${B_C}:5301`, token]);
      const s = (await t.guest.execOk('cat /tmp/udp1.txt')).trim();
      return s ? s : undefined;
    }, 300);
    return { ok: got === token, detail: `1200-byte datagram ${got === token ? 'arrived intact' : `arrived different (${got.length} bytes)`}` };
  });
  await t.step('UDP B→A', async () => {
    const token = randomBytes(600).toString('hex');
    const out = join(t.work, 'udp-at-A.txt');
    const rx = t.lab.spawn(t.ca.ns, ['timeout', '30', 'socat', '-u', `UDP4-RECVFROM:5302,bind=${A_C}`, `OPEN:${out},creat,trunc`]);
    await pollFor('UDP listener in A', 5000, async () => {
      const r = await t.lab.exec(t.ca.ns, ['ss', '-lun']);
      return r.stdout.includes(':5302 ') ? true : undefined;
    }, 50);
    const line = await pollFor('datagram at A', 15_000, async () => {
      if (rx.running) {
        await t.guest.execOk(`printf %s ${token} | ip netns exec c0 socat -u STDIN UDP4-SENDTO:${A_C}:5302`);
        await Promise.race([rx.exited, sleep(300)]);
      }
      return rx.running ? undefined : existsSync(out) ? readFileSync(out, 'utf8') : '';
    }, 0);
    return { ok: line === token, detail: `1200-byte datagram ${line === token ? 'arrived intact' : `arrived different (${line.length} bytes)`}` };
  });
}

export async function tcpChecks(t: InteropLab): Promise<void> {
  const bytes = t.opts.tcpBytes ?? 16 * 1024 * 1024;
  const data = randomBytes(bytes);
  const sha = createHash('sha256').update(data).digest('hex');
  const file = join(t.work, 'data.bin');
  writeFileSync(file, data);
  const mib = (bytes / 1048576).toFixed(0);
  await t.step(`TCP ${mib} MiB A→B`, async () => {
    await t.guest.execOk(
      `(timeout 120 ip netns exec c0 socat -u TCP4-LISTEN:5401,bind=${B_C},reuseaddr OPEN:/tmp/rx.bin,creat,trunc; sha256sum /tmp/rx.bin > /tmp/rx.sha.tmp; stat -c %s /tmp/rx.bin >> /tmp/rx.sha.tmp; mv /tmp/rx.sha.tmp /tmp/rx.sha) > /tmp/tcp1.log 2>&1 &
for i in $(seq 100); do ip netns exec c0 ss -ltn | grep -q ':5401 ' && exit 0; sleep 0.05; done; exit 1`,
    );
    const t0 = Date.now();
    await t.lab.exec(t.ca.ns, ['socat', '-u', `OPEN:${file}`, `TCP4:${B_C}:5401,connect-timeout=5`], { timeoutMs: 120_000 });
    const out = await pollFor('sha256 at B', 60_000, async () => {
      const r = await t.guest.exec('cat /tmp/rx.sha 2>/dev/null');
      return r.code === 0 && r.output.trim() ? r.output.trim() : undefined;
    }, 200);
    const secs = (Date.now() - t0) / 1000;
    const [shaLine, size] = out.split('\n');
    const got = shaLine.split(/\s+/)[0];
    return { ok: got === sha && Number(size) === bytes, detail: `${size} bytes, sha256 ${got.slice(0, 16)}… ${got === sha ? '=' : '≠'} sent ${sha.slice(0, 16)}… (in ${secs.toFixed(1)} s)` };
  });
  await t.step(`TCP ${mib} MiB B→A`, async () => {
    const out = join(t.work, 'rx-at-A.bin');
    const rx = t.lab.spawn(t.ca.ns, ['timeout', '120', 'socat', '-u', `TCP4-LISTEN:5402,bind=${A_C},reuseaddr`, `OPEN:${out},creat,trunc`]);
    await pollFor('TCP listener in A', 5000, async () => {
      const r = await t.lab.exec(t.ca.ns, ['ss', '-ltn']);
      return r.stdout.includes(':5402 ') ? true : undefined;
    }, 50);
    const t0 = Date.now();
    await t.guest.execOk(`ip netns exec c0 socat -u OPEN:${file} TCP4:${A_C}:5402,connect-timeout=5`, { timeoutMs: 120_000 });
    await rx.wait(60_000);
    const secs = (Date.now() - t0) / 1000;
    const got = existsSync(out) ? readFileSync(out) : Buffer.alloc(0);
    const gsha = createHash('sha256').update(got).digest('hex');
    rmSync(out, { force: true });
    return { ok: gsha === sha && got.length === bytes, detail: `${got.length} bytes, sha256 ${gsha.slice(0, 16)}… ${gsha === sha ? '=' : '≠'} sent ${sha.slice(0, 16)}… (in ${secs.toFixed(1)} s)` };
  });
  rmSync(file, { force: true });
}
