import { COMPARED, type ResultTable } from "./results.ts";
import { SYSTEMS, type SystemName } from "./protocol.ts";
import { spread } from "./stats.ts";

/** A figure with about three significant digits, thousands separated. */
export function formatNumber(value: number): string {
  const abs = Math.abs(value);
  const digits = abs >= 100 || value === 0 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** "median [min–max]", or the value alone when every round agrees or there was one. */
function formatRuns(runs: Array<number | null>): string | undefined {
  const s = spread(runs);
  if (!s) return undefined;
  const median = formatNumber(s.median);
  const [min, max] = [formatNumber(s.min), formatNumber(s.max)];
  return min === max ? median : `${median} [${min}–${max}]`;
}

/**
 * The Markdown table: one row per metric, medians over rounds with min–max,
 * and mcp-lockd's ratio to each other system, oriented so that >1 means
 * mcp-lockd is better. A missing value shows as "n/a" with a numbered note.
 */
/** The reason of rows whose workload was left out (--workloads). */
export const NOT_RUN_WORKLOAD = "not run (--workloads)";

export function markdownTable(table: ResultTable, preamble: string[]): string {
  const notes: string[] = [];
  const note = (reason: string) => {
    let index = notes.indexOf(reason);
    if (index < 0) index = notes.push(reason) - 1;
    return `n/a [${index + 1}]`;
  };
  const header = [
    "workload",
    "metric",
    "unit",
    ...SYSTEMS.map((system) => (system === "mcp-lockd" ? "mcp-lockd median [min–max]" : system)),
    ...COMPARED.map((other) => `mcp-lockd ÷ ${other} (>1: mcp-lockd better)`),
  ];
  const lines = [`| ${header.join(" | ")} |`, `|${header.map((_, i) => (i < 3 ? "---" : "---:")).join("|")}|`];
  let previousWorkload = "";
  for (const def of table.defs) {
    // Rows of workloads left out with --workloads are not shown at all.
    if (SYSTEMS.some((system) => table.reason(def.key, system) === NOT_RUN_WORKLOAD)) continue;
    const cell = (system: SystemName) => {
      const runs = table.results(def.key, system);
      const text = runs ? formatRuns(runs) : undefined;
      if (text === undefined) return note(`${system}: ${table.reason(def.key, system) ?? "no value"}`);
      const partial = runs?.some((value) => value === null) ? ` (${note(`${system}: ${table.reason(def.key, system)}`)})` : "";
      return text + partial;
    };
    const ratioCell = (other: SystemName) => {
      if (def.info) return "";
      const ratio = table.ratio(def.key, other);
      if (!ratio) return "–";
      const text = `${ratio.median.toFixed(2)}×`;
      return ratio.min.toFixed(2) === ratio.max.toFixed(2) ? text : `${text} [${ratio.min.toFixed(2)}–${ratio.max.toFixed(2)}]`;
    };
    const workload = def.workload === previousWorkload ? "" : def.workload;
    previousWorkload = def.workload;
    lines.push(`| ${[workload, def.metric, def.unit, ...SYSTEMS.map(cell), ...COMPARED.map(ratioCell)].join(" | ")} |`);
  }
  return [
    ...preamble,
    "",
    ...lines,
    "",
    "Ratios: mcp-lockd's value ÷ the other's for higher-is-better rows, the other's ÷ mcp-lockd's for lower-is-better rows, so >1 always means mcp-lockd is better; computed within each round, then the median [min–max] over rounds. Rows without a ratio are context (CPU at whatever rate was reached, counts).",
    "",
    ...notes.map((reason, i) => `[${i + 1}] ${reason}`),
    "",
  ].join("\n");
}
