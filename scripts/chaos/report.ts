import { DEFAULT_CAMPAIGN, type CampaignResult } from "./campaign.ts";
import { VIOLATION_KINDS } from "./checker.ts";

const SHOWN_PER_KIND = 10;

/** The campaign's result for people: what was injected, what was checked, what was found. */
export function formatReport(result: CampaignResult): string {
  const { report } = result;
  const lines: string[] = [];
  lines.push(`chaos: seed ${result.seed}, ${result.durationMs / 1000} s of faults (replay: ${replayCommand(result)})`);
  lines.push(`fencing counters written by the store: ${result.fenceDirectories ? "directories (protocol version 2 and later)" : "files (protocol version 1)"}`);
  const faults = Object.entries(report.faults).map(([kind, n]) => `${kind} ${n}`);
  lines.push(`faults injected: ${faults.length === 0 ? "none" : faults.join(", ")} (total ${Object.values(report.faults).reduce((a, b) => a + (b ?? 0), 0)}; ${report.longStops} stops past the guard's staleness, ${report.stopsInsideGuard} stops as the target created a temp file)`);
  lines.push(
    `checked: ${report.grants} grants, ${report.writes.accepted + report.writes.refused} fenced writes (${report.writes.refused} refused), ` +
      `${report.overlapsResolvedByFencing} overlaps resolved by fencing, ${report.lostLeases.total} leases lost by the store's word (${report.lostLeases.excused} explained by a fault), ${report.waits} waits`,
  );
  const kinds = Object.entries(report.byKind).map(([kind, n]) => `${kind} ${n.grants} grants / ${n.errors} errors`);
  lines.push(`per participant kind: ${kinds.join(", ")}`);
  lines.push(`violations: ${VIOLATION_KINDS.map((k) => `${k} ${report.counts[k]}`).join(", ")}`);
  for (const kind of VIOLATION_KINDS) {
    const found = report.violations.filter((v) => v.kind === kind);
    for (const v of found.slice(0, SHOWN_PER_KIND)) lines.push(`  ${kind}${v.resource ? ` [${v.resource}]` : ""}: ${v.detail}`);
    if (found.length > SHOWN_PER_KIND) lines.push(`  ... and ${found.length - SHOWN_PER_KIND} more ${kind}`);
  }
  if (result.keptDir) lines.push(`histories, logs and the lock dir kept in ${result.keptDir}`);
  lines.push(result.clean ? "CLEAN" : "VIOLATIONS FOUND");
  return lines.join("\n") + "\n";
}

/** The command line that runs the same campaign again (options that differ from the defaults). */
export function replayCommand({ options }: CampaignResult): string {
  const args = [`--seed ${options.seed}`, `--duration ${options.durationMs / 1000}s`];
  const counts = ["grpc", "python", "store", "resources"] as const;
  for (const key of counts) if (options[key] !== DEFAULT_CAMPAIGN[key]) args.push(`--${key} ${options[key]}`);
  if (options.ttlMs !== DEFAULT_CAMPAIGN.ttlMs) args.push(`--ttl ${options.ttlMs / 1000}s`);
  if (options.maxWaitMs !== DEFAULT_CAMPAIGN.maxWaitMs) args.push(`--max-wait ${options.maxWaitMs / 1000}s`);
  if (options.runtime !== DEFAULT_CAMPAIGN.runtime) args.push(`--runtime ${options.runtime}`);
  return `npm run chaos -- ${args.join(" ")}`;
}
