import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { startServiceFixture } from "../helpers/service-process.ts";
import { TestLockClient } from "../helpers/lock-client.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";
import type { KeepAliveResponse } from "../../src/gen/mcplockd/v1/lock.ts";

test("one slow renewal does not hold up the other leases on its KeepAlive stream", { timeout: 60_000 }, async () => {
  const fixture = await startServiceFixture();
  const other = new TestLockClient(fixture.service.grpcAddress);
  const stream = fixture.client.raw.keepAlive();
  const guard = join(fixture.lockDir, "stuck.lock.guard");
  try {
    const ttl = { seconds: 1, nanos: 0 };
    const stuck = (await fixture.client.acquire({ resource: "stuck", holder: "h", ttl })).lease!;
    const free = (await fixture.client.acquire({ resource: "free", holder: "h", ttl })).lease!;
    const answers: KeepAliveResponse[] = [];
    const answered = new Map<string, () => void>();
    stream.on("data", (response: KeepAliveResponse) => {
      answers.push(response);
      answered.get(response.leaseId)?.();
    });
    const answerFor = (leaseId: string) => new Promise<void>((resolve) => answered.set(leaseId, resolve));

    // Another process holds stuck's guard, as a file-protocol writer in the
    // middle of a change would. A try-once Acquire of "stuck" then waits for
    // the guard in the resource's turn, and a renewal of "stuck" waits behind it.
    await mkdir(guard);
    const contender = other.acquire({ resource: "stuck", holder: "other" }).catch((err: unknown) => err);
    await waitFor(async () => (await other.listLocks("stuck")).locks[0]?.waiters === 1, "the Acquire to be in line for stuck");
    const stuckAnswered = answerFor(stuck.leaseId);
    const freeAnswered = answerFor(free.leaseId);
    stream.write({ leaseId: stuck.leaseId });
    stream.write({ leaseId: free.leaseId });

    await withTimeout(freeAnswered, 5_000, "the renewal of the lease whose resource is not stuck");
    assert.equal(answers[0]?.leaseId, free.leaseId, "answered first although requested second");
    assert.equal(answers[0]?.expired, false);
    assert.ok(!answers.some((a) => a.leaseId === stuck.leaseId), "the stuck renewal is still waiting");

    await rmdir(guard);
    await withTimeout(stuckAnswered, 15_000, "the stuck renewal once the guard is gone");
    assert.equal(answers[1]?.leaseId, stuck.leaseId);
    assert.equal(answers[1]?.expired, false);
    await contender;
  } finally {
    stream.end();
    other.close();
    await rmdir(guard).catch(() => {});
    await fixture.close();
  }
});
