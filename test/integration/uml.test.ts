// A real Linux kernel (user-mode Linux, with ipip.ko) as a lab host: two of them on a veth pair, each in its
// own host namespace, kernel ipip configured as the Fan configures a kernel without fan-map.
//
// These must run wherever the suite runs (CI installs user-mode-linux): a guest that cannot boot is a failure
// with the reason and the kernel's console, never a skip; one that is merely slow gets UML_BOOT_DEADLINE_MS.
// USERFAN_LAB_UML_FAIL=1 makes the boot fail on purpose, to see that.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab } from '../../src/lab/netns.js';
import { bootUmlHost, startUml } from '../../src/lab/uml.js';
import type { UmlGuest } from '../../src/lab/uml-guest.js';
import { UML_BOOT_DEADLINE_MS, umlMissing } from '../../src/lab/uml-kernel.js';
import { kernelFanScript, parseLinkStats } from '../../src/lab/uml-scripts.js';

const BOOT = UML_BOOT_DEADLINE_MS;

describe('user-mode Linux lab host', () => {
  beforeAll(() => {
    const problem = umlMissing(); // boots the guest kernel once (bounded by BOOT)
    if (problem) throw new Error(`user-mode Linux cannot boot here: ${problem}`);
  }, BOOT + 30_000);

  it('runs a script to the end and returns its status and output', async () => {
    const lab = await Lab.create();
    try {
      const ns = await lab.addNamespace('one');
      const r = await bootUmlHost({
        ns,
        lab,
        script: 'echo "kernel $(uname -r) value=$VALUE"; lsmod | grep -q "^ipip " && echo ipip-loaded; exit 3',
        env: { VALUE: "it's here" },
        modules: ['ipip'],
        timeoutMs: BOOT,
      });
      expect(r.exitCode).toBe(0); // powered off cleanly, not killed
      expect(r.status).toBe(3);
      expect(r.output).toMatch(/kernel 6\.\d+\.\d+ value=it's here/);
      expect(r.output).toContain('ipip-loaded');
    } finally {
      await lab.destroy();
    }
  }, BOOT + 30_000);

  describe('two kernel hosts, kernel ipip between their containers', () => {
    let lab: Lab;
    let nsA: string;
    let vethA: string;
    let a: UmlGuest;
    let b: UmlGuest;

    beforeAll(async () => {
      lab = await Lab.create();
      nsA = await lab.addNamespace('hA');
      const nsB = await lab.addNamespace('hB');
      vethA = lab.ifName('vA');
      const vethB = lab.ifName('vB');
      await lab.addVeth({ ns: nsA, name: vethA }, { ns: nsB, name: vethB });
      const host = (underlay: string, remote: string) =>
        kernelFanScript({ underlay, underlayLen: 16, remotes: [remote] }) + 'uf_serve 300\n';
      a = await startUml({ ns: nsA, veths: [vethA], lab, cpu: 0, timeoutMs: BOOT + 300_000, script: host('198.18.0.27', '198.18.0.28') });
      b = await startUml({ ns: nsB, veths: [vethB], lab, cpu: 1, timeoutMs: BOOT + 300_000, script: host('198.18.0.28', '198.18.0.27') });
      await Promise.all([a.ready(BOOT), b.ready(BOOT)]);
    }, BOOT + 30_000);

    afterAll(async () => {
      await Promise.all([a?.shutdown(10_000), b?.shutdown(10_000)].filter(Boolean)).catch(() => undefined);
      await Promise.all([a?.dispose(), b?.dispose()]);
      await lab?.destroy();
    });

    it('configures tunl0, the slice route and the fan bridge like the Fan does', async () => {
      const routes = await a.execOk('ip route show 250.0.28.0/24');
      expect(routes).toMatch(/250\.0\.28\.0\/24 via 198\.18\.0\.28 dev tunl0 onlink/);
      const br = await a.execOk('ip -br addr show dev fan-250-0-27; cat /sys/class/net/fan-250-0-27/mtu');
      expect(br).toContain('250.0.27.1/24');
      expect(br).toMatch(/^1480$/m);
      expect((await a.execOk('ip -n c0 -br addr show dev eth0')).trim()).toMatch(/250\.0\.27\.3\/24/);
    });

    it('container to container ping goes through kernel ipip (tunl0 counters, IP-in-IP on the wire)', async () => {
      const before = parseLinkStats(await b.execOk('ip -s -j link show dev tunl0'));
      // Watch the wire from the host side: the veth the first guest is attached to.
      const cap = lab.spawn(nsA, ['timeout', '20', 'tcpdump', '-l', '-n', '-i', vethA, '-c', '4', 'ip proto 4']);
      await cap.waitForLine(/listening on/, 10_000);
      const ping = await a.exec('ip netns exec c0 ping -n -c 5 -i 0.2 -W 2 250.0.28.3', { timeoutMs: 20_000 });
      expect(ping.output).toMatch(/5 received/);
      expect(ping.code).toBe(0);
      const after = parseLinkStats(await b.execOk('ip -s -j link show dev tunl0'));
      // every echo request was decapsulated by B's ipip, every reply encapsulated by it
      expect(after.rxPackets - before.rxPackets).toBeGreaterThanOrEqual(5);
      expect(after.txPackets - before.txPackets).toBeGreaterThanOrEqual(5);
      expect(after.rxErrors).toBe(0);
      await cap.wait(20_000);
      const wire = cap.lines.filter((l) => l.stream === 'stdout').map((l) => l.line);
      expect(wire.some((l) => /198\.18\.0\.27 > 198\.18\.0\.28: (IP )?250\.0\.27\.3 > 250\.0\.28\.3: ICMP echo request/.test(l))).toBe(true);
      expect(wire.some((l) => /198\.18\.0\.28 > 198\.18\.0\.27: (IP )?250\.0\.28\.3 > 250\.0\.27\.3: ICMP echo reply/.test(l))).toBe(true);
    });

    it('carries a TCP transfer through the tunnel', async () => {
      await b.execOk('ip netns exec c0 iperf3 -s -1 -D -p 5201 --logfile /tmp/iperf.log');
      const r = await a.exec('ip netns exec c0 iperf3 -c 250.0.28.3 -p 5201 -n 4M --connect-timeout 3000', { timeoutMs: 30_000 });
      expect(r.code).toBe(0);
      expect(r.output).toMatch(/receiver/);
    });
  });
});
