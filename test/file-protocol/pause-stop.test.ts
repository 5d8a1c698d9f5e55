// Issue 14's reproduction with real processes: a service is frozen with
// SIGSTOP inside its guard (right after taking it, after writing its temp
// file, and right before its commit) and kept stopped past the guard's 10 s
// staleness while a second service on the same lock dir breaks the guard and
// takes the resource. After SIGCONT the first service must not issue a token
// twice or below the one issued meanwhile, nor commit over the second's
// lease: it finds the resource busy. The service stops itself at the step
// through its test hook (MCP_LOCKD_TEST_STOP_AT), so the point is exact.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { lstat, readFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { readFenceToken } from "../helpers/fence.ts";
import { TestLockClient, expectGrpcError } from "../helpers/lock-client.ts";
import { startServiceProcess, type ServiceProcess } from "../helpers/service-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";

const POINTS = ["guard", "temp", "commit"] as const;
// Each round runs the three points side by side (about 12 s); CI runs two.
const ROUNDS = Number(process.env.MCP_LOCKD_PAUSE_ROUNDS ?? 2);

/** The one-letter state in /proc/PID/stat: "T" when stopped. */
async function processState(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

describe("services stopped inside the guard past its staleness", { concurrency: true }, () => {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const point of POINTS) {
      test(`round ${round}: a service stopped at "${point}" past the guard's staleness issues no token twice or below, and commits nothing over the other's lease`, { timeout: 60_000 }, async () => {
        const temp = await makeTempDir();
        let paused: ServiceProcess | undefined;
        let other: ServiceProcess | undefined;
        const clients: TestLockClient[] = [];
        try {
          const lockDir = temp.path;
          paused = await startServiceProcess({ lockDir, env: { MCP_LOCKD_TEST_STOP_AT: `${point}:r0` } });
          other = await startServiceProcess({ lockDir });
          const pausedClient = new TestLockClient(paused.grpcAddress);
          const otherClient = new TestLockClient(other.grpcAddress);
          clients.push(pausedClient, otherClient);

          const first = pausedClient.acquire({ resource: "r0", holder: "first", ttl: { seconds: 30, nanos: 0 } }).then(
            (response) => ({ response }),
            (error: unknown) => ({ error }),
          );
          const pid = paused.child.pid!;
          await waitFor(async () => (await processState(pid)) === "T", `the service stopping itself at ${point}`, 10_000, 5);
          const stoppedAt = Date.now();
          // The guard was made before the stop (its mtime says when): nobody may break it for 10 s.
          const guardMadeAt = (await lstat(join(lockDir, "r0.lock.guard"))).mtimeMs;

          // The other service waits out the guard's staleness, breaks it and takes r0.
          const second = await withTimeout(
            otherClient.acquire({ resource: "r0", holder: "second", ttl: { seconds: 30, nanos: 0 } }),
            25_000,
            "the second service's grant",
          );
          assert.ok(Date.now() - guardMadeAt >= 10_000, "the guard was broken only once stale");
          const secondToken = Number(second.lease!.fencingToken);
          const secondFile = await readFile(join(lockDir, "r0.lock"), "utf8");
          // Keep it stopped a little past the staleness, as in the reproduction (11-12 s).
          const keepStopped = 11_500 - (Date.now() - stoppedAt);
          if (keepStopped > 0) await new Promise((resolve) => setTimeout(resolve, keepStopped));
          paused.child.kill("SIGCONT");

          const outcome = await withTimeout(first, 15_000, "the first service's answer after SIGCONT");
          if ("response" in outcome) {
            // Granted only if it took r0 afresh after the second released it: never here.
            assert.fail(`the stopped service granted r0 (token ${outcome.response.lease?.fencingToken}) over a live lease`);
          }
          await expectGrpcError(Promise.reject(outcome.error), status.ABORTED, [/second/]);
          assert.equal(await readFile(join(lockDir, "r0.lock"), "utf8"), secondFile, "the second service's lease file is intact");
          assert.equal(await readFenceToken(lockDir, "r0"), secondToken, "no token was issued after the second's");
          // Stopped before it read, it just finds r0 busy; stopped later, its checks before the commit fail.
          if (point !== "guard") assert.match(paused.stderr(), /starting over/, "the stopped service noticed and started over");

          // Both go on serving; the next grant of r0 is above everything issued.
          await otherClient.release(second.lease!.leaseId);
          const third = await pausedClient.acquire({ resource: "r0", holder: "third" });
          assert.ok(Number(third.lease!.fencingToken) > secondToken, "tokens keep increasing");
        } finally {
          for (const client of clients) client.close();
          if (paused) {
            paused.child.kill("SIGCONT");
            await paused.stop("SIGKILL");
          }
          await other?.stop("SIGKILL");
          await temp.remove();
        }
      });
    }
  }
});
