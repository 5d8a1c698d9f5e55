// The bench's ratio chart (scripts/bench/ratio-chart.ts): one bar per
// compared row on a log scale with 1× marked, drawn from the result JSON.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chartRows, renderRatioChart, xOf } from "../../scripts/bench/ratio-chart.ts";
import type { WorkloadJson } from "../../scripts/bench/results.ts";

function workload(name: string, metric: string, ratio: number | null, info = false): WorkloadJson {
  const spread = ratio === null ? null : { median: ratio, min: ratio / 2, max: ratio * 2, per_round: [ratio] };
  return {
    name,
    metric,
    unit: "x",
    better: "higher",
    results: { "mcp-lockd": [1], etcd: [1], "proper-lockfile": [1] },
    reasons: {},
    summary: { "mcp-lockd": null, etcd: null, "proper-lockfile": null },
    ...(info ? { info: true as const } : { ratios: { "mcp-lockd/etcd": spread, "mcp-lockd/proper-lockfile": null } }),
  };
}

test("chartRows: the compared rows in order, context-only rows left out, a missing ratio kept as n/a", () => {
  const rows = chartRows([
    workload("1. Uncontended (2 load processes)", "throughput", 0.5),
    workload("1. Uncontended", "server CPU", null, true),
    workload("3. Handoff", "p99", 59),
    workload("6. Listing", "p50", null),
  ]);
  assert.deepEqual(
    rows.map((r) => [r.label, r.ratio]),
    [
      ["1. Uncontended: throughput", 0.5],
      ["3. Handoff: p99", 59],
      ["6. Listing: p50", null],
    ],
  );
});

test("renderRatioChart: a log axis with 1× marked, bars from 1× to each ratio, values printed, labels escaped", () => {
  const svg = renderRatioChart(
    [
      { label: "a <b> & c", ratio: 10, min: 5, max: 20 },
      { label: "worse", ratio: 0.1, min: 0.1, max: 0.1 },
      { label: "missing", ratio: null, min: null, max: null },
      { label: "off the scale", ratio: 1e6, min: null, max: null },
    ],
    "t",
  );
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.ok(svg.includes("a &lt;b&gt; &amp; c") && !svg.includes("<b>"), "labels are escaped");
  // A decade is a quarter of the plot; 1× in the middle.
  assert.equal(xOf(10) - xOf(1), xOf(1) - xOf(0.1));
  assert.equal(xOf(100) - xOf(1), 2 * (xOf(10) - xOf(1)));
  assert.equal(xOf(1e6), xOf(100), "clamped to the plot");
  const bars = [...svg.matchAll(/<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"[^>]*fill="(#2a7|url\(#worse\))"/g)];
  assert.equal(bars.length, 3, "one bar per row with a ratio");
  const [better, worse] = bars;
  assert.equal(Number(better![1]), xOf(1));
  assert.equal(Number(better![1]) + Number(better![2]), xOf(10), "the better bar ends at 10×");
  assert.equal(better![3], "#2a7");
  assert.equal(Number(worse![1]), xOf(0.1), "the worse bar starts at 0.1×");
  assert.equal(worse![3], "url(#worse)", "worse bars are hatched: readable without colour");
  for (const text of ["10×", "0.10×", "n/a", "1×"]) assert.ok(svg.includes(`>${text}<`), `prints ${text}`);
});
