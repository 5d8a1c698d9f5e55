import { formatNumber } from "../report.ts";
import { runSynchronized } from "../synchronized-run.ts";
import { percentiles } from "../stats.ts";
import type { HandoffResult, Hold } from "../protocol.ts";
import { keepWindow, record, spreadOver, type RunContext } from "./run-context.ts";

/** Clock disagreement between processes tolerated before two holds count as overlapping. */
const OVERLAP_TOLERANCE_MS = 1;

export interface HandoffAnalysis {
  /** Changes of holder granted in the window. */
  handoffs: number;
  /** Handoff latencies (ms), negative ones counted as 0. */
  latencies: number[];
  /** How many latencies were negative: the waiter's grant arrived before the releaser's response. */
  negative: number;
  /** Grants in the window to the contender that had just released: the lock did not change hands. */
  retakes: number;
  /** Grants in the window. */
  grants: number;
  /** Grants that came before the previous holder had even sent its release: two holders at once, or clocks that disagree. */
  overlaps: number;
}

/**
 * Orders the holds by grant time (one holder at a time, so they alternate
 * grant, release, grant, ...). A handoff is a grant to another contender
 * than the previous holder. Handoff latency: from a holder's release
 * response, while another contender is waiting, to the next grant to a
 * contender other than that holder, on the shared clock. For a queue
 * (mcp-lockd, etcd) that next grant is the very next one, so this is exactly
 * "release response to the next holder's grant". Without a queue
 * (proper-lockfile) the releaser can take the lock straight back while the
 * waiters sleep in their backoff: each such release still counts, from its
 * response to the moment a waiter finally gets the lock, so polling shows
 * in the latency and not only in the re-takes. A grant can also arrive
 * before the releaser's own response: real and fast, counted as 0 ms.
 */
export function analyzeHandoffs(holds: Hold[], from: number, to: number): HandoffAnalysis {
  const sorted = [...holds].sort((a, b) => a.grantAt - b.grantAt);
  // nextOther[i]: the first later hold by another contender than hold i's.
  const nextOther: number[] = Array(sorted.length).fill(-1);
  for (let i = sorted.length - 2; i >= 0; i--) {
    nextOther[i] = sorted[i + 1]!.contender !== sorted[i]!.contender ? i + 1 : nextOther[i + 1]!;
  }
  const inWindow = (at: number) => at >= from && at < to;
  const result: HandoffAnalysis = { handoffs: 0, latencies: [], negative: 0, retakes: 0, grants: 0, overlaps: 0 };
  for (let i = 0; i < sorted.length; i++) {
    const hold = sorted[i]!;
    const previous = sorted[i - 1];
    if (previous && hold.grantAt < previous.releaseSentAt - OVERLAP_TOLERANCE_MS) result.overlaps++;
    if (inWindow(hold.grantAt)) {
      result.grants++;
      if (previous?.contender === hold.contender) result.retakes++;
      else if (previous) result.handoffs++;
    }
    const next = sorted[nextOther[i]!];
    if (!next || !inWindow(next.grantAt) || next.waitFrom > hold.releaseSentAt) continue; // nobody was waiting for this release
    const latency = next.grantAt - hold.releaseAnsweredAt;
    if (latency < 0) result.negative++;
    result.latencies.push(Math.max(0, latency));
  }
  return result;
}

/**
 * W3: `contenders` clients on one resource, spread over up to
 * settings.handoffProcesses load processes (contender i on ctx.loads[i] while
 * there are fewer contenders than processes). Rows under `key`.
 */
export async function runHandoff(ctx: RunContext, contenders: number, key = `w3-${contenders}`): Promise<void> {
  const resource = `${key}-r${ctx.round}`;
  const perProcess = spreadOver(Array.from({ length: contenders }, (_, i) => i), ctx.settings.handoffProcesses);
  const run = await runSynchronized(
    perProcess.map((group, i) => ({ load: ctx.loads[i]!, job: { kind: "handoff" as const, resource, contenders: group.length } })),
    { warmupMs: ctx.settings.warmupMs, measureMs: ctx.settings.measureMs },
    ctx.started.serverPid,
  );
  const holds = run.results.flatMap((result) => (result as HandoffResult).holds);
  const { handoffs, latencies, negative, retakes, grants, overlaps } = analyzeHandoffs(holds, run.schedule.measureFrom, run.schedule.measureTo);
  if (overlaps > 0) ctx.log(`warning: ${key}: ${overlaps} grants came before the previous holder sent its release (overlapping holds, or process clocks that disagree by over ${OVERLAP_TOLERANCE_MS} ms)`);
  const seconds = (run.schedule.measureTo - run.schedule.measureFrom) / 1000;
  const { p50, p90, p99 } = percentiles(latencies);
  const { clientPct } = keepWindow(ctx, key, run.cpu);
  record(ctx, `${key}.rate`, handoffs / seconds);
  record(ctx, `${key}.p50`, p50, "no handoff in the window");
  record(ctx, `${key}.p90`, p90, "no handoff in the window");
  record(ctx, `${key}.p99`, p99, "no handoff in the window");
  record(ctx, `${key}.negative`, latencies.length === 0 ? null : (100 * negative) / latencies.length, "no handoff in the window");
  record(ctx, `${key}.retakes`, grants === 0 ? null : (100 * retakes) / grants, "no grant in the window");
  if (run.cpu.serverCpuMs !== null) record(ctx, `${key}.serverCpuPerOp`, run.cpu.serverCpuMs / handoffs, "no handoff in the window");
  record(ctx, `${key}.clientCpu`, clientPct);
  ctx.log(
    `${key}: ${formatNumber(handoffs / seconds)} handoffs/s, p50 ${formatNumber(p50)} p90 ${formatNumber(p90)} p99 ${formatNumber(p99)} ms, ` +
      `${latencies.length === 0 ? 0 : Math.round((100 * negative) / latencies.length)}% granted before the release response, ${retakes} re-takes`,
  );
}
