import { formatNumber } from "../report.ts";
import { runSynchronized } from "../synchronized-run.ts";
import { percentiles } from "../stats.ts";
import type { CyclesResult } from "../protocol.ts";
import { keepWindow, record, spreadOver, type RunContext } from "./run-context.ts";

/**
 * W1, W2, W4: closed loops of acquire+release (or the full lifecycle), one
 * client per resource so there is no contention, spread over load processes.
 */
export async function runCycles(
  ctx: RunContext,
  options: { key: string; clients: number; processes: number; op: "acquire-release" | "lifecycle"; warmupMs: number },
): Promise<void> {
  const resources = Array.from({ length: options.clients }, (_, i) => `${options.key}-r${ctx.round}-${i}`);
  const groups = spreadOver(resources, options.processes);
  const run = await runSynchronized(
    groups.map((group, i) => ({ load: ctx.loads[i]!, job: { kind: "cycles" as const, op: options.op, resources: group } })),
    { warmupMs: options.warmupMs, measureMs: ctx.settings.measureMs },
    ctx.started.serverPid,
  );
  const latencies = run.results.flatMap((result) => (result as CyclesResult).latencies);
  const seconds = (run.schedule.measureTo - run.schedule.measureFrom) / 1000;
  const { p50, p99 } = percentiles(latencies);
  const { serverPct, clientPct } = keepWindow(ctx, options.key, run.cpu);
  const { key } = options;
  record(ctx, `${key}.rate`, latencies.length / seconds);
  record(ctx, `${key}.p50`, p50, "no cycle completed");
  record(ctx, `${key}.p99`, p99, "no cycle completed");
  if (run.cpu.serverCpuMs !== null) record(ctx, `${key}.serverCpuPerOp`, run.cpu.serverCpuMs / latencies.length, "no cycle completed");
  record(ctx, `${key}.serverCpu`, serverPct);
  record(ctx, `${key}.clientCpu`, clientPct);
  ctx.log(
    `${key}: ${formatNumber(latencies.length / seconds)} cycles/s, p50 ${formatNumber(p50)} ms, p99 ${formatNumber(p99)} ms, ` +
      `server ${serverPct === null ? "-" : formatNumber(serverPct)}% client ${formatNumber(clientPct)}% of a core`,
  );
}
