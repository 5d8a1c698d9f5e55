import { sharedNow, sleepUntil } from "./clock.ts";
import { kernelThreadsCpuMs, machineTicks, processCpuMs, ticksToMs } from "./process-metrics.ts";

/** CPU use during one measured window. */
export interface CpuWindow {
  seconds: number;
  /** utime+stime of the server process in the window; null without a server. */
  serverCpuMs: number | null;
  /** utime+stime of each load process in the window. */
  clientCpuMs: number[];
  /** Busy share of all the machine's cores (not idle, iowait or steal), in %. */
  machineBusyPct: number;
  /** Kernel threads (ext4 journal, block I/O, writeback) and interrupts (loopback networking), in % of one core: partly the systems' own doing. */
  kernelCpuPct: number;
  /** Busy CPU outside all of the above: other processes on the machine, in % of one core. Noise when high. */
  otherCpuPct: number;
}

interface Reading {
  at: number;
  server: number | null;
  clients: Array<number | null>;
  ticks: Awaited<ReturnType<typeof machineTicks>>;
  kernelThreads: number;
}

async function read(serverPid: number | undefined, clientPids: number[]): Promise<Reading> {
  const [server, clients, ticks, kernelThreads] = await Promise.all([
    serverPid === undefined ? Promise.resolve(null) : processCpuMs(serverPid),
    Promise.all(clientPids.map(processCpuMs)),
    machineTicks(),
    kernelThreadsCpuMs(),
  ]);
  return { at: sharedNow(), server, clients, ticks, kernelThreads };
}

/**
 * Sleeps until `from`, reads the CPU times of the server and the load
 * processes, sleeps until `to` and reads them again. /proc counts in clock
 * ticks (10 ms), which is why windows last seconds.
 */
export async function measureCpuWindow(
  pids: { server?: number; clients: number[] },
  from: number,
  to: number,
): Promise<CpuWindow> {
  await sleepUntil(from);
  const start = await read(pids.server, pids.clients);
  await sleepUntil(to);
  const end = await read(pids.server, pids.clients);
  const seconds = (end.at - start.at) / 1000;
  const serverCpuMs = start.server === null || end.server === null ? null : end.server - start.server;
  const clientCpuMs = end.clients.map((value, i) => (value === null || start.clients[i] === null ? 0 : value - start.clients[i]!));
  const total = Math.max(1, end.ticks.total - start.ticks.total);
  const busyTicks = total - (end.ticks.idle - start.ticks.idle) - (end.ticks.iowait - start.ticks.iowait) - (end.ticks.steal - start.ticks.steal);
  const ownMs = (serverCpuMs ?? 0) + clientCpuMs.reduce((a, b) => a + b, 0);
  const kernelMs = end.kernelThreads - start.kernelThreads + ticksToMs(end.ticks.interrupts - start.ticks.interrupts);
  const pct = (ms: number) => (100 * Math.max(0, ms)) / (seconds * 1000);
  return {
    seconds,
    serverCpuMs,
    clientCpuMs,
    machineBusyPct: (100 * busyTicks) / total,
    kernelCpuPct: pct(kernelMs),
    otherCpuPct: pct(ticksToMs(busyTicks) - ownMs - kernelMs),
  };
}
