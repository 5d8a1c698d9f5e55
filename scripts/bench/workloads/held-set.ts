import type { LoadProcess } from "../load-process.ts";
import { processRssMiB } from "../process-metrics.ts";
import type { HoldResult, ListResult, RenewalResult } from "../protocol.ts";
import { formatNumber } from "../report.ts";
import { percentiles, median } from "../stats.ts";
import { runNow, runSynchronized } from "../synchronized-run.ts";
import { keepWindow, record, type RunContext } from "./run-context.ts";

const PREFIX = "held-";

/** Splits `total` between the keepers as evenly as possible. */
function share(total: number, keepers: number, i: number): number {
  return Math.floor(total / keepers) + (i < total % keepers ? 1 : 0);
}

/**
 * W5, W6 and the held part of W7 on one held set, built once per run and
 * grown: first the small set on few streams (measured at ttl/3, then at the
 * maximum rate), then the large set on many streams (measured at ttl/3; the
 * server's RSS then is W7's "holding" figure), and the listing while the
 * large set is held and renewed. Two load processes hold and renew, a third
 * lists.
 */
export async function runHeldSet(ctx: RunContext): Promise<void> {
  const s = ctx.settings;
  const keepers = ctx.loads.slice(0, 2);
  const lister = ctx.loads[2]!;
  const serverPid = ctx.started.serverPid;
  const maxPerKeeper = share(s.manyLeases, keepers.length, 0);

  /** Grows the held set to `leases`; returns the grants per second it took (null when nothing was granted). */
  const hold = async (leases: number, streams: number): Promise<number | null> => {
    const started = Date.now();
    const results = (await runNow(
      keepers.map((load, i) => ({
        load,
        job: {
          kind: "hold" as const,
          prefix: PREFIX,
          firstIndex: i * maxPerKeeper,
          count: share(leases, keepers.length, i),
          streams: share(streams, keepers.length, i),
          ttlSeconds: s.leaseTtlSeconds,
          concurrency: s.holdConcurrency,
          timeoutMs: s.holdTimeoutMs,
        },
      })),
    )) as HoldResult[];
    const seconds = (Date.now() - started) / 1000;
    const alive = results.reduce((sum, r) => sum + r.alive, 0);
    const notGranted = results.reduce((sum, r) => sum + r.notGranted, 0);
    const lost = results.reduce((sum, r) => sum + r.lost, 0);
    ctx.log(
      `held ${formatNumber(alive)} of ${formatNumber(leases)} leases on ${streams} streams in ${formatNumber(seconds)} s` +
        (notGranted + lost > 0 ? ` (${notGranted} not granted, ${lost} lost: ${results.flatMap((r) => r.errors).slice(0, 2).join("; ")})` : ""),
    );
    const granted = results.reduce((sum, r) => sum + r.granted, 0);
    return granted > 0 ? granted / seconds : null;
  };

  const renewalWindow = async (key: string, kind: "renewal-window" | "max-rate", warmupMs: number, measureMs: number) => {
    const run = await runSynchronized(
      keepers.map((load: LoadProcess) => ({ load, job: { kind } })),
      { warmupMs, measureMs },
      serverPid,
    );
    const results = run.results as RenewalResult[];
    const roundTrips = results.flatMap((r) => r.roundTrips);
    const seconds = (run.schedule.measureTo - run.schedule.measureFrom) / 1000;
    const { p50, p99 } = percentiles(roundTrips);
    const { serverPct, clientPct } = keepWindow(ctx, key, run.cpu);
    const rss = serverPid === undefined ? null : await processRssMiB(serverPid);
    const alive = results.reduce((sum, r) => sum + r.alive, 0);
    record(ctx, `${key}.rate`, roundTrips.length / seconds);
    record(ctx, `${key}.p50`, p50, "no renewal answered in the window");
    record(ctx, `${key}.p99`, p99, "no renewal answered in the window");
    record(ctx, `${key}.serverCpu`, serverPct);
    record(ctx, `${key}.rss`, rss);
    record(ctx, `${key}.alive`, alive);
    record(ctx, `${key}.clientCpu`, clientPct);
    const errors = results.flatMap((r) => r.errors);
    ctx.log(
      `${key}: ${formatNumber(roundTrips.length / seconds)} renewals/s, p50 ${formatNumber(p50)} ms, p99 ${formatNumber(p99)} ms, ` +
        `server ${serverPct === null ? "-" : formatNumber(serverPct)}% client ${formatNumber(clientPct)}% of a core, ${alive} alive` +
        (errors.length > 0 ? `; ${errors.slice(0, 2).join("; ")}` : ""),
    );
    return rss;
  };

  try {
    await hold(s.fewLeases, s.fewLeasesStreams);
    await renewalWindow("w5-few", "renewal-window", s.renewalWarmupMs, s.renewalMeasureMs);
    await renewalWindow("w5-max", "max-rate", Math.min(1_000, s.warmupMs), s.maxRateMeasureMs);
    record(ctx, "w5-many.growRate", await hold(s.manyLeases, s.manyLeasesStreams), "no lease granted while growing the set");
    const rss = await renewalWindow("w5-many", "renewal-window", s.manyLeasesWarmupMs, s.manyLeasesMeasureMs);
    record(ctx, "w7.held", rss);

    // The listing runs while the set is held and renewed, as it would be in use.
    const [listing] = (await runNow([
      { load: lister, job: { kind: "list" as const, prefix: PREFIX, requests: s.listRequests, maxMs: s.listMaxMs } },
    ])) as ListResult[];
    const { p50, p99 } = percentiles(listing!.latencies);
    record(ctx, "w6.p50", p50, "no listing finished");
    record(ctx, "w6.p99", p99, "no listing finished");
    record(ctx, "w6.entries", median(listing!.entries), "no listing finished");
    ctx.log(`w6: ${listing!.latencies.length} listings of ${formatNumber(median(listing!.entries))} entries, p50 ${formatNumber(p50)} ms, p99 ${formatNumber(p99)} ms`);
  } finally {
    await runNow(keepers.map((load) => ({ load, job: { kind: "drop" as const } }))).catch(() => {});
  }
}
