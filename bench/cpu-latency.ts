/**
 * The kernel's CPU latency limit (PM QoS, /dev/cpu_dma_latency): how long, at most, an idle CPU may take
 * to start running again. A process writes a limit in µs (a 32-bit integer) and the kernel keeps the
 * lowest limit any process holds until that process closes the file (or exits). With 0, cpuidle keeps
 * idle CPUs in its polling state instead of halting them: waking a thread on another CPU is then a
 * store the polling CPU sees, not an interrupt. On a VM whose idle vCPUs halt, that is the difference
 * between ~45 µs and ~3 µs per cross-CPU wake-up (bench/wake.c measures it), paid for with idle CPUs
 * that spin. The setting is machine-wide: the bench holds it only while it measures, when asked (--idle-poll).
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';

export const CPU_LATENCY_DEVICE = '/dev/cpu_dma_latency';

/** A held limit; release() gives it back (closing the file is what the kernel listens to). */
export interface CpuLatencyHold {
  readonly us: number;
  release(): void;
}

/** Holds the limit at `us` µs until release() or until this process ends. Throws, naming the device, if it cannot. */
export function holdCpuLatency(us: number): CpuLatencyHold {
  if (!(Number.isInteger(us) && us >= 0 && us <= 2_000_000_000)) throw new RangeError(`CPU latency limit must be a whole number of µs, 0 to 2000000000, not ${us}`);
  let fd: number | undefined;
  try {
    fd = openSync(CPU_LATENCY_DEVICE, 'w');
    const v = Buffer.alloc(4);
    v.writeInt32LE(us);
    writeSync(fd, v);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    throw new Error(`cannot hold the CPU latency limit at ${us} µs through ${CPU_LATENCY_DEVICE}: ${(e as Error).message}`);
  }
  const held = fd;
  let open = true;
  return {
    us,
    release() {
      if (!open) return;
      open = false;
      closeSync(held);
    },
  };
}

/** The limit in force now (the lowest any process holds; 2000000000 when nobody holds one), or undefined if unreadable. */
export function currentCpuLatency(): number | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(CPU_LATENCY_DEVICE, 'r');
    const v = Buffer.alloc(4);
    return readSync(fd, v, 0, 4, null) === 4 ? v.readInt32LE(0) : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
