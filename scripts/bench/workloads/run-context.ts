import type { CpuWindow } from "../cpu-window.ts";
import type { LoadProcess } from "../load-process.ts";
import type { Settings } from "../options.ts";
import type { SystemName } from "../protocol.ts";
import type { ResultTable } from "../results.ts";
import type { BenchSystem, StartedSystem } from "../systems/bench-system.ts";

/** CPU use of one measured window, kept in the JSON so a limit can be traced. */
export interface WindowRecord {
  round: number;
  system: SystemName;
  workload: string;
  seconds: number;
  serverCpuPct: number | null;
  clientCpuPct: number[];
  machineBusyPct: number;
  kernelCpuPct: number;
  otherCpuPct: number;
}

/** One run: one system, fresh, in one round. */
export interface RunContext {
  system: BenchSystem;
  started: StartedSystem;
  settings: Settings;
  /** 0-based. */
  round: number;
  /** The run's load processes; workloads use the first few. */
  loads: LoadProcess[];
  table: ResultTable;
  windows: WindowRecord[];
  log(message: string): void;
}

/** Records a value unless the catalog has no such row or the row does not apply to the system. */
export function record(ctx: RunContext, key: string, value: number | null, reason?: string): void {
  if (!ctx.table.has(key) || ctx.table.results(key, ctx.system.name) === null) return;
  ctx.table.set(key, ctx.system.name, ctx.round, value, reason);
}

export function percentOfCore(cpuMs: number, seconds: number): number {
  return (100 * cpuMs) / (seconds * 1000);
}

/** Keeps the window's CPU figures and returns the server's and clients' share of a core. */
export function keepWindow(ctx: RunContext, workload: string, cpu: CpuWindow): { serverPct: number | null; clientPct: number } {
  const serverPct = cpu.serverCpuMs === null ? null : percentOfCore(cpu.serverCpuMs, cpu.seconds);
  const clientCpuPct = cpu.clientCpuMs.map((ms) => percentOfCore(ms, cpu.seconds));
  ctx.windows.push({
    round: ctx.round + 1,
    system: ctx.system.name,
    workload,
    seconds: cpu.seconds,
    serverCpuPct: serverPct,
    clientCpuPct,
    machineBusyPct: cpu.machineBusyPct,
    kernelCpuPct: cpu.kernelCpuPct,
    otherCpuPct: cpu.otherCpuPct,
  });
  if (cpu.otherCpuPct > 25) ctx.log(`warning: other processes used ${cpu.otherCpuPct.toFixed(0)}% of a core during ${workload}; its figures are suspect`);
  ctx.log(
    `${workload} CPU: server ${serverPct === null ? "-" : serverPct.toFixed(0)}%, clients ${clientCpuPct.map((p) => p.toFixed(0)).join("+")}%, ` +
      `kernel threads and interrupts ${cpu.kernelCpuPct.toFixed(0)}%, other ${cpu.otherCpuPct.toFixed(0)}% of a core; machine ${cpu.machineBusyPct.toFixed(0)}% busy`,
  );
  return { serverPct, clientPct: clientCpuPct.reduce((a, b) => a + b, 0) };
}

/** Splits `items` into `parts` groups as even as possible (round robin). */
export function spreadOver<T>(items: T[], parts: number): T[][] {
  const groups: T[][] = Array.from({ length: Math.min(parts, items.length) }, () => []);
  items.forEach((item, i) => groups[i % groups.length]!.push(item));
  return groups;
}
