// `npm run bench -- --quick` end to end: it runs every workload against
// mcp-lockd, etcd (when it can be installed) and proper-lockfile, prints the
// Markdown table and writes JSON of the documented shape. Nothing about
// speed is asserted: CI shares its two cores with the other tests.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { runProcess } from "../helpers/run-process.ts";

const BENCH_MAIN = fileURLToPath(new URL("../../scripts/bench/main.js", import.meta.url));
const SYSTEMS = ["mcp-lockd", "etcd", "proper-lockfile"] as const;
const MACHINE_KEYS = ["cpus", "model", "memory", "kernel", "node", "etcd_version", "fs_type", "date", "git_commit", "mode"];

function isNumberOrNull(value: unknown): boolean {
  return value === null || (typeof value === "number" && Number.isFinite(value));
}

test("bench --quick prints the table and writes results of the documented shape", { timeout: 300_000 }, async () => {
  const dir = await makeTempDir("bench-test-");
  try {
    const out = join(dir.path, "results.json");
    const run = await runProcess(process.execPath, [BENCH_MAIN, "--quick", "--out", out], { timeoutMs: 280_000 });
    assert.equal(run.code, 0, `bench exited ${run.code ?? run.signal}:\n${run.stderr.slice(-4000)}`);
    assert.match(run.stdout, /\| workload \| metric \| unit \| mcp-lockd median \[min–max\] \| etcd \| proper-lockfile \| mcp-lockd ÷ etcd/);

    const json = JSON.parse(await readFile(out, "utf8")) as {
      machine: Record<string, unknown>;
      workloads: Array<Record<string, unknown>>;
    };
    for (const key of MACHINE_KEYS) assert.ok(key in json.machine, `machine.${key} missing`);
    assert.equal(json.machine.mode, "quick");
    assert.equal(typeof json.machine.cpus, "number");
    const etcdRan = typeof json.machine.etcd_version === "string";

    assert.ok(Array.isArray(json.workloads) && json.workloads.length >= 20, "expected every workload's rows");
    const names = new Set(json.workloads.map((w) => w.name as string));
    for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 9]) assert.ok([...names].some((name) => name.startsWith(`${n}. `)), `workload ${n} missing`);

    for (const row of json.workloads) {
      const label = `${String(row.name)} / ${String(row.metric)}`;
      assert.equal(typeof row.name, "string", label);
      assert.equal(typeof row.metric, "string", label);
      assert.equal(typeof row.unit, "string", label);
      assert.ok(row.better === "higher" || row.better === "lower", `${label}: better is ${String(row.better)}`);
      const results = row.results as Record<string, unknown>;
      const reasons = (row.reasons ?? {}) as Record<string, unknown>;
      assert.deepEqual(Object.keys(results).sort(), [...SYSTEMS].sort(), `${label}: results keys`);
      for (const system of SYSTEMS) {
        const runs = results[system];
        const reason = reasons[system];
        if (runs === null) {
          assert.ok(typeof reason === "string" && reason.length > 0, `${label}: ${system} is null without a reason`);
          continue;
        }
        assert.ok(Array.isArray(runs) && runs.length === 1, `${label}: ${system} should have one run in quick mode`);
        assert.ok(runs.every(isNumberOrNull), `${label}: ${system} runs must be numbers or null: ${JSON.stringify(runs)}`);
        if (runs.includes(null)) assert.ok(typeof reason === "string" && reason.length > 0, `${label}: ${system} has a null run without a reason`);
        // A workload that threw is a broken harness (or server), not a slow one.
        assert.ok(!(typeof reason === "string" && reason.includes("failed:")), `${label}: ${system}: ${String(reason)}`);
      }
      // The harness must have measured mcp-lockd everywhere (only a missing binary is excused, and
      // workload 9, mcp-lockd on the etcd store, without etcd), and etcd when it is there.
      const mine = results["mcp-lockd"] as Array<number | null> | null;
      const excused = String(reasons["mcp-lockd"] ?? "").includes("not built") || (!etcdRan && String(row.name).startsWith("9. "));
      if (!excused) assert.ok(mine?.some((v) => typeof v === "number"), `${label}: no mcp-lockd value: ${String(reasons["mcp-lockd"])}`);
      if (etcdRan && results.etcd !== null) assert.ok((results.etcd as unknown[]).some((v) => typeof v === "number"), `${label}: no etcd value: ${String(reasons.etcd)}`);
      if (row.ratios !== undefined) {
        const ratios = row.ratios as Record<string, unknown>;
        assert.deepEqual(Object.keys(ratios).sort(), ["mcp-lockd/etcd", "mcp-lockd/proper-lockfile"], `${label}: ratio keys`);
        for (const ratio of Object.values(ratios)) {
          if (ratio === null) continue;
          const { median, min, max } = ratio as Record<string, unknown>;
          assert.ok([median, min, max].every((v) => typeof v === "number" && v > 0), `${label}: ratio ${JSON.stringify(ratio)}`);
        }
      }
    }
    if (!etcdRan) {
      const etcdReasons = json.workloads.map((row) => (row.reasons as Record<string, string>).etcd);
      assert.ok(etcdReasons.every((reason) => typeof reason === "string" && reason.length > 0), "etcd did not run: every row needs the reason");
    }
  } finally {
    await dir.remove();
  }
});
