// A waiting client whose process is paused (SIGSTOP) when its grant is sent,
// past the lease's ttl: the service ends the lease meanwhile and may grant it
// again. When the process goes on, acquire() must not hand out a lock it
// believes live for another ttl (counted from the late receipt): it says the
// grant came too late, and holds nothing. Found by the chaos campaign.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { LockClient } from "../../src/index.ts";
import { startServiceFixture } from "../helpers/service-process.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";

test("a grant that reaches a process paused past the lease's ttl is refused, not returned as live", { timeout: 60_000 }, async () => {
  const fixture = await startServiceFixture();
  const holder = new LockClient({ address: fixture.service.grpcAddress });
  try {
    const held = await holder.acquire("paused-grant", { ttl: 10_000 });
    const script = fileURLToPath(new URL("./acquire-and-report.js", import.meta.url));
    const child = spawn(process.execPath, [script, fixture.service.grpcAddress, "paused-grant"], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    const reported = new Promise<string>((resolve) =>
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        stdout += chunk;
        if (stdout.includes("\n")) resolve(stdout.split("\n")[0]!);
      }),
    );
    try {
      await waitFor(async () => (await holder.list("paused-grant"))[0]?.waiters === 1, "the child to queue");
      child.kill("SIGSTOP");
      // The hand-over grants the stopped child, whose 1 s lease then ends unrenewed.
      await held.release();
      await waitFor(async () => (await holder.list("paused-grant")).length === 0, "the child's lease to end at the service", 10_000);
      const other = await holder.acquire("paused-grant", { ttl: 10_000 });
      child.kill("SIGCONT");
      const report = JSON.parse(await withTimeout(reported, 15_000, "the child to report")) as { ok: boolean; error?: string; reason?: string; expiresInMs?: number };
      assert.equal(report.ok, false, `acquire() returned a lock it believed live for ${report.expiresInMs} ms more, while another holds it`);
      assert.equal(report.error, "LeaseLostError");
      assert.equal(report.reason, "expired");
      assert.equal((await holder.list("paused-grant"))[0]?.holder, other.holder, "the other holder's lease is untouched");
      await other.release();
    } finally {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
    }
  } finally {
    holder.close();
    await fixture.close();
  }
});
