// The bench's ratios: per round, oriented so that >1 means mcp-lockd is
// better, then the median (scripts/bench/results.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ResultTable } from "../../scripts/bench/results.ts";
import { SYSTEMS } from "../../scripts/bench/protocol.ts";
import { parseOptions } from "../../scripts/bench/options.ts";

function table(): ResultTable {
  return new ResultTable(
    [
      { key: "rate", workload: "w", metric: "throughput", unit: "ops/s", better: "higher" },
      { key: "p50", workload: "w", metric: "p50", unit: "ms", better: "lower" },
      { key: "cpu", workload: "w", metric: "cpu", unit: "%", better: "lower", info: true },
    ],
    [...SYSTEMS],
    3,
  );
}

test("ratios are taken within each round and oriented by `better`", () => {
  const t = table();
  [100, 200, 300].forEach((v, round) => t.set("rate", "mcp-lockd", round, v));
  [50, 50, 600].forEach((v, round) => t.set("rate", "etcd", round, v));
  [2, 1, 4].forEach((v, round) => t.set("p50", "mcp-lockd", round, v));
  [4, 4, 4].forEach((v, round) => t.set("p50", "etcd", round, v));
  assert.deepEqual(t.ratio("rate", "etcd"), { median: 2, min: 0.5, max: 4, per_round: [2, 4, 0.5] });
  assert.deepEqual(t.ratio("p50", "etcd"), { median: 2, min: 1, max: 4, per_round: [2, 4, 1] });
  assert.equal(t.ratio("rate", "proper-lockfile"), null, "no values, no ratio");
});

test("a missing value carries its reason; rows that do not apply are null for the whole system; context rows have no ratio", () => {
  const t = table();
  t.set("rate", "mcp-lockd", 0, 10);
  t.set("rate", "mcp-lockd", 1, NaN, "no cycle completed");
  t.setNotApplicable("p50", "proper-lockfile", "a library");
  t.set("cpu", "mcp-lockd", 0, 5);
  t.set("cpu", "etcd", 0, 5);
  const rows = t.toJson();
  assert.deepEqual(rows[0]!.results["mcp-lockd"], [10, null, null]);
  assert.match(rows[0]!.reasons["mcp-lockd"]!, /round 2: no cycle completed/);
  assert.equal(rows[1]!.results["proper-lockfile"], null);
  assert.equal(rows[1]!.reasons["proper-lockfile"], "a library");
  assert.equal(rows[2]!.ratios, undefined);
  assert.equal(rows[2]!.info, true);
});

test("quick mode writes bench/results/quick.json unless --out says otherwise; full mode latest.json", () => {
  assert.match(parseOptions(["--quick"]).outFile, /bench\/results\/quick\.json$/);
  assert.match(parseOptions([]).outFile, /bench\/results\/latest\.json$/);
  assert.equal(parseOptions(["--quick", "--out", "/tmp/x.json"]).outFile, "/tmp/x.json");
  assert.equal(parseOptions(["--quick"]).rounds, 1);
  assert.equal(parseOptions([]).rounds, 3);
  assert.throws(() => parseOptions(["--systems", "redis"]), /unknown system/);
});

test("--workloads runs only the numbered workloads and never replaces latest.json", () => {
  assert.deepEqual(parseOptions([]).workloads, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const some = parseOptions(["--workloads", "5,6"]);
  assert.deepEqual(some.workloads, [5, 6]);
  assert.match(some.outFile, /bench\/results\/partial\.json$/);
  assert.equal(parseOptions(["--workloads", "6", "--out", "/tmp/x.json"]).outFile, "/tmp/x.json");
  assert.throws(() => parseOptions(["--workloads", "10"]), /unknown workload "10"/);
});
