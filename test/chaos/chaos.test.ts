// The short form of `npm run chaos` for CI: ~35 s of faults with a fixed
// seed, including SIGSTOPs past the guard's 10 s staleness of the service and
// of a file-protocol process (armed on their temp files, so they land inside
// the guard), and a campaign that must come out clean. The service runs under
// MCP_LOCKD_TEST_RUNTIME (node by default; binary and deno work too, by hand).
//
// File protocol version 1 (fence FILES with token reservations) is what issue
// 14 fixes: against it the campaign may find the very violations the issue
// describes, so until the store writes version 2 (fence DIRECTORIES) the test
// runs as a TODO (reported, not failing the run); then it is binding.
import { test } from "node:test";
import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { hashLeaseId } from "../../src/core/lease-id.ts";
import { LeaseFileStore } from "../../src/store/lease-file-store.ts";
import { runCampaign } from "../../scripts/chaos/campaign.ts";
import { formatReport } from "../../scripts/chaos/report.ts";
import { storeCalls } from "../../scripts/chaos/store-calls.ts";
import { testRuntime } from "../helpers/service-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

const SEED = 1405;
const DURATION_MS = 35_000;

/** Whether this tree's store keeps the fencing counter as a directory (file protocol version 2). */
async function storeWritesVersion2(): Promise<boolean> {
  const dir = await makeTempDir("chaos-probe-");
  try {
    const store = storeCalls(new LeaseFileStore({ dir: dir.path }));
    await store.open();
    await store.acquire("probe", { holder: "probe", ttlMs: 1_000, metadata: {}, leaseIdHash: hashLeaseId("probe") }, Date.now);
    return (await stat(join(dir.path, "probe.lock.fence"))).isDirectory();
  } finally {
    await dir.remove();
  }
}

const version2 = await storeWritesVersion2();

test(
  `chaos campaign, seed ${SEED}, ${DURATION_MS / 1000} s: no unresolved overlap, token out of order, lost lease, stuck waiter, crash or junk`,
  { timeout: 150_000, todo: version2 ? false : "the store still writes file protocol version 1 (issue 14 not fixed yet)" },
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
