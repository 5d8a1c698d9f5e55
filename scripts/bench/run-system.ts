import { setTimeout as sleep } from "node:timers/promises";
import { LoadProcess } from "./load-process.ts";
import type { Settings, WorkloadNumber } from "./options.ts";
import { processRssMiB } from "./process-metrics.ts";
import type { ResultTable } from "./results.ts";
import type { BenchSystem } from "./systems/bench-system.ts";
import { runCycles } from "./workloads/cycles.ts";
import { runHandoff } from "./workloads/handoff.ts";
import { runHeldSet } from "./workloads/held-set.ts";
import { record, type RunContext, type WindowRecord } from "./workloads/run-context.ts";

/** Load processes per run: the most any workload uses (16 handoff contenders over 4). */
const LOAD_PROCESSES = 4;

interface Step {
  /** Row-key prefixes it fills (nulled with the error if it fails). */
  keys: string[];
  /** The numbered workloads it measures (docs/performance.md; --workloads). */
  workloads: WorkloadNumber[];
  /** What the system must have for the step to run at all. */
  needs?: "keepalive";
  run(ctx: RunContext): Promise<void>;
}

function steps(settings: Settings): Step[] {
  return [
    { keys: ["w1"], workloads: [1], run: (ctx) => runCycles(ctx, { key: "w1", clients: 1, processes: 1, op: "acquire-release", warmupMs: settings.firstWarmupMs }) },
    {
      keys: ["w2"],
      workloads: [2],
      run: (ctx) =>
        runCycles(ctx, {
          key: "w2",
          clients: settings.manyClients,
          processes: settings.manyClientsProcesses,
          op: "acquire-release",
          // 64 first grants (each makes its resource's counter) must be behind the window.
          warmupMs: settings.firstWarmupMs,
        }),
    },
    { keys: ["w3-2"], workloads: [3], run: (ctx) => runHandoff(ctx, 2) },
    { keys: ["w3-16"], workloads: [3], run: (ctx) => runHandoff(ctx, 16) },
    { keys: ["w4"], workloads: [4], run: (ctx) => runCycles(ctx, { key: "w4", clients: 1, processes: 1, op: "lifecycle", warmupMs: settings.warmupMs }) },
    { keys: ["w5-few", "w5-max", "w5-many", "w6", "w7.held"], workloads: [5, 6, 7], needs: "keepalive", run: runHeldSet },
  ];
}

/**
 * One run: a fresh instance of the system (new data dir, new process) and
 * fresh load processes, every workload in order, then everything stopped.
 * A failing workload nulls its rows for this round, with the error as the
 * reason, and the load processes are replaced before the next one.
 */
export async function runSystem(
  system: BenchSystem,
  round: number,
  settings: Settings,
  table: ResultTable,
  windows: WindowRecord[],
  log: (message: string) => void,
): Promise<void> {
  const started = await system.start();
  let loads: LoadProcess[] = [];
  const stopLoads = () => Promise.all(loads.map((load) => load.stop()));
  try {
    loads = await Promise.all(Array.from({ length: LOAD_PROCESSES }, () => LoadProcess.start(started.target)));
    const ctx: RunContext = { system, started, settings, round, loads, table, windows, log };
    if (started.serverPid !== undefined) {
      await sleep(settings.settleMs); // start-up work done, nothing asked yet
      record(ctx, "w7.idle", await processRssMiB(started.serverPid));
    }
    for (const step of steps(settings)) {
      if (step.needs && system.notApplicable[step.needs]) continue;
      if (!step.workloads.some((n) => settings.workloads.includes(n))) continue;
      try {
        await step.run(ctx);
      } catch (err) {
        const message = (err as Error).message.split("\n")[0]!;
        log(`${step.keys.join(", ")} failed: ${(err as Error).stack ?? message}`);
        for (const prefix of step.keys) {
          const keys = table.has(prefix) ? [prefix] : table.keys(prefix);
          for (const key of keys) {
            // Rows it filled before failing keep their values.
            const runs = table.results(key, system.name);
            if (runs !== null && runs[round] === null) table.set(key, system.name, round, null, `failed: ${message}`);
          }
        }
        await stopLoads();
        loads = await Promise.all(Array.from({ length: LOAD_PROCESSES }, () => LoadProcess.start(started.target)));
        ctx.loads = loads;
      }
    }
  } finally {
    await stopLoads();
    await started.stop();
  }
}
