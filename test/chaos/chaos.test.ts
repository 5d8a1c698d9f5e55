// The short form of `npm run chaos` for CI: ~35 s of faults with a fixed
// seed, including SIGSTOPs past the guard's 10 s staleness of the service and
// of a file-protocol process (armed on their temp files, so they land inside
// the guard), and a campaign that must come out clean. The service runs under
// MCP_LOCKD_TEST_RUNTIME (node by default; binary and deno work too, by hand).
// Against file protocol version 1 (token reservations) it found the very
// violations of issue 14 (docs/chaos.md); against version 2 it must be clean.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runCampaign } from "../../scripts/chaos/campaign.ts";
import { formatReport } from "../../scripts/chaos/report.ts";
import { testRuntime } from "../helpers/service-process.ts";

const SEED = 1405;
const DURATION_MS = 35_000;

test(
  `chaos campaign, seed ${SEED}, ${DURATION_MS / 1000} s: no unresolved overlap, token out of order, lost lease, stuck waiter, crash or junk`,
  { timeout: 150_000 },
  async () => {
    const lines: string[] = [];
    const result = await runCampaign({
      durationMs: DURATION_MS,
      seed: SEED,
      grpc: 3,
      python: 1,
      store: 2,
      resources: 2,
      ttlMs: 3_000,
      maxWaitMs: 5_000,
      runtime: testRuntime(),
      keep: false,
      log: (line) => lines.push(line),
    });
    const report = formatReport(result);
    process.stdout.write(report);
    const { faults } = result.report;
    // The report says how to run this campaign again.
    assert.match(report, /replay: npm run chaos -- --seed 1405 --duration 35s --python 1 --resources 2 --max-wait 5s\)/);
    // The scenario set ran: long stops of the service and of a file-protocol process, and the rest.
    assert.ok(result.report.longStops >= 2, `expected at least two stops past the guard's staleness:\n${report}`);
    assert.ok((faults["stop-service"] ?? 0) >= 1 && (faults["stop-file-participant"] ?? 0) >= 1, report);
    assert.ok(result.report.stopsInsideGuard >= 1, `no stop caught a writer inside the guard:\n${report}`);
    assert.ok(result.report.grants >= 10, `too few grants to mean anything:\n${report}`);
    assert.ok(result.report.writes.accepted > 0, report);
    assert.equal(result.clean, true, report);
  },
);
