// The bench's picture: one bar per compared row, mcp-lockd ÷ a reference
// system (oriented so that > 1 means mcp-lockd is better), on a log scale
// with 1× marked. Plain SVG text, written by the bench itself: no browser,
// no chart library.
//
//   node dist/scripts/bench/ratio-chart.js bench/results/latest.json [OUT.svg]
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { WorkloadJson } from "./results.ts";

export interface ChartRow {
  label: string;
  /** Median of the per-round ratios; null when a system had no value. */
  ratio: number | null;
  min: number | null;
  max: number | null;
}

/** The rows of `workloads` that compare mcp-lockd with `against`, in order. */
export function chartRows(workloads: WorkloadJson[], against = "etcd"): ChartRow[] {
  return workloads
    .filter((w) => !w.info && w.ratios !== undefined && `mcp-lockd/${against}` in w.ratios)
    .map((w) => {
      const r = w.ratios![`mcp-lockd/${against}`];
      const workload = w.name.replace(/\s*\(.*\)\s*$/, "");
      return { label: `${workload}: ${w.metric}`, ratio: r?.median ?? null, min: r?.min ?? null, max: r?.max ?? null };
    });
}

const LOG_MIN = -2; // 0.01×
const LOG_MAX = 2; // 100×
const LABEL_WIDTH = 560;
const PLOT_WIDTH = 420;
const ROW_HEIGHT = 18;
const TOP = 48;

/** x of a ratio on the log axis, clamped to the plot. */
export function xOf(ratio: number): number {
  const log = Math.min(LOG_MAX, Math.max(LOG_MIN, Math.log10(ratio)));
  return LABEL_WIDTH + ((log - LOG_MIN) / (LOG_MAX - LOG_MIN)) * PLOT_WIDTH;
}

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function formatRatio(ratio: number): string {
  return ratio >= 10 ? `${Math.round(ratio)}×` : `${ratio.toPrecision(2)}×`;
}

/**
 * The chart as an SVG document. Bars start at 1× and end at the median
 * ratio (right of 1×: mcp-lockd better); a thin line spans the rounds'
 * min–max. Readable without colour: the value is printed on every row, and
 * bars left of 1× are hatched.
 */
export function renderRatioChart(rows: ChartRow[], title: string): string {
  const height = TOP + rows.length * ROW_HEIGHT + 36;
  const width = LABEL_WIDTH + PLOT_WIDTH + 70;
  const one = xOf(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<defs><pattern id="worse" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="2" height="4" fill="#b44"/></pattern></defs>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="8" y="18" font-size="13" font-weight="bold">${escape(title)}</text>`,
    `<text x="8" y="34" fill="#444">right of 1×: mcp-lockd better (log scale; bar: median of rounds, line: min–max)</text>`,
  ];
  for (let exp = LOG_MIN; exp <= LOG_MAX; exp++) {
    const ratio = 10 ** exp;
    const x = xOf(ratio);
    const label = `${ratio}×`;
    out.push(`<line x1="${x}" y1="${TOP - 6}" x2="${x}" y2="${height - 30}" stroke="${exp === 0 ? "#000" : "#ccc"}" stroke-width="${exp === 0 ? 1.5 : 1}"/>`);
    out.push(`<text x="${x}" y="${height - 16}" text-anchor="middle">${label}</text>`);
  }
  rows.forEach((row, i) => {
    const y = TOP + i * ROW_HEIGHT;
    out.push(`<text x="${LABEL_WIDTH - 6}" y="${y + 12}" text-anchor="end">${escape(row.label)}</text>`);
    if (row.ratio === null || !(row.ratio > 0)) {
      out.push(`<text x="${one + 4}" y="${y + 12}" fill="#444">n/a</text>`);
      return;
    }
    const x = xOf(row.ratio);
    const better = row.ratio >= 1;
    out.push(
      `<rect x="${Math.min(one, x)}" y="${y + 3}" width="${Math.max(1, Math.abs(x - one))}" height="${ROW_HEIGHT - 6}" fill="${better ? "#2a7" : "url(#worse)"}" stroke="#333" stroke-width="0.5"/>`,
    );
    let labelX = Math.max(one, x);
    if (row.min !== null && row.max !== null && row.min > 0 && row.max > 0) {
      out.push(`<line x1="${xOf(row.min)}" y1="${y + ROW_HEIGHT / 2}" x2="${xOf(row.max)}" y2="${y + ROW_HEIGHT / 2}" stroke="#000" stroke-width="1"/>`);
      labelX = Math.max(labelX, xOf(row.max));
    }
    out.push(`<text x="${labelX + 4}" y="${y + 12}">${formatRatio(row.ratio)}</text>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/** Writes the chart of a bench result file next to it (or to `outFile`). */
export async function writeRatioChart(resultFile: string, outFile = resultFile.replace(/\.json$/, "") + ".svg"): Promise<string> {
  const json = JSON.parse(await readFile(resultFile, "utf8")) as { workloads: WorkloadJson[]; machine?: { etcd_version?: string } };
  const etcd = json.machine?.etcd_version ? ` ${json.machine.etcd_version}` : "";
  await writeFile(outFile, renderRatioChart(chartRows(json.workloads), `mcp-lockd ÷ etcd${etcd}, per row`));
  return outFile;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [resultFile, outFile] = process.argv.slice(2);
  if (!resultFile) {
    console.error("usage: node dist/scripts/bench/ratio-chart.js RESULT.json [OUT.svg]");
    process.exit(64);
  }
  console.log(`wrote ${await writeRatioChart(resultFile, outFile)}`);
}
