import { execFileSync } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";

/** Kernel clock ticks per second, the unit of /proc/<pid>/stat times. */
const CLK_TCK = (() => {
  try {
    const value = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    return Number.isFinite(value) && value > 0 ? value : 100;
  } catch {
    return 100;
  }
})();

/**
 * CPU time (utime + stime, all threads) of a process in ms, from
 * /proc/<pid>/stat; null once the process is gone.
 */
export async function processCpuMs(pid: number): Promise<number | null> {
  try {
    return parseStat(await readFile(`/proc/${pid}/stat`, "utf8")).cpuMs;
  } catch {
    return null;
  }
}

function parseStat(stat: string): { ppid: number; cpuMs: number } {
  // The command name (field 2) may hold spaces: count fields after its ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const field = (n: number) => Number(fields[n - 3]);
  return { ppid: field(4), cpuMs: ((field(14) + field(15)) * 1000) / CLK_TCK };
}

/**
 * CPU time of all kernel threads (kthreadd and its children) in ms: the ext4
 * journal, block I/O and writeback workers. Work a server causes there (say,
 * by fsyncing) is not in its own utime+stime.
 */
export async function kernelThreadsCpuMs(): Promise<number> {
  const pids = (await readdir("/proc")).filter((name) => /^\d+$/.test(name));
  const stats = await Promise.all(pids.map((pid) => readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined)));
  let total = 0;
  stats.forEach((stat, i) => {
    if (stat === undefined) return;
    const { ppid, cpuMs } = parseStat(stat);
    if (pids[i] === "2" || ppid === 2) total += cpuMs;
  });
  return total;
}

/** Resident memory (VmRSS) of a process in MiB; null once it is gone. */
export async function processRssMiB(pid: number): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kib = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
    return kib === undefined ? null : Number(kib) / 1024;
  } catch {
    return null;
  }
}

export interface MachineTicks {
  total: number;
  idle: number;
  iowait: number;
  /** Time in hard and soft interrupts (loopback networking, block I/O completions): nobody's utime or stime. */
  interrupts: number;
  /** Time the hypervisor gave to other guests: neither busy here nor idle. */
  steal: number;
}

/** Whole-machine CPU ticks (all cores) from the first line of /proc/stat: user nice system idle iowait irq softirq steal. */
export async function machineTicks(): Promise<MachineTicks> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n", 1)[0] ?? "";
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  return { total: ticks.reduce((a, b) => a + b, 0), idle: ticks[3] ?? 0, iowait: ticks[4] ?? 0, interrupts: (ticks[5] ?? 0) + (ticks[6] ?? 0), steal: ticks[7] ?? 0 };
}

export function ticksToMs(ticks: number): number {
  return (ticks * 1000) / CLK_TCK;
}
