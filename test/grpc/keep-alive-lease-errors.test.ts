// One lease's file-system error must not end a KeepAlive stream that renews
// other leases (issue 14): the failing lease gets its own answer and the
// others go on, on the same stream. A lease file replaced by a directory is
// no longer a valid lease: that lease answers `expired`. A store failure that
// may pass (a stray file where the guard directory goes, EACCES) answers an
// in-band `error`: the lease was not renewed but is not known lost, and the
// TypeScript and Python clients retry it sooner, losing it only at its
// confirmed expiry. Real gRPC against the service as a child process, and
// in-process with an injected file system for EACCES (root ignores chmod 000).

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, rm, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { LeaseLostError, LockClient } from "../../src/index.ts";
import { keepAliveDiagnostics } from "../../src/client/diagnostics.ts";
import { startService } from "../../src/service.ts";
import type { KeepAliveResponse } from "../../src/gen/mcplockd/v1/lock.ts";
import { FaultyFileSystem } from "../helpers/faulty-file-system.ts";
import { TestLockClient, ms } from "../helpers/lock-client.ts";
import { startServiceFixture } from "../helpers/service-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { withTimeout } from "../helpers/wait.ts";
import { PythonLeaseDriver } from "../clients/python-lease-driver.ts";

const seconds = (s: number) => ({ seconds: s, nanos: 0 });

/**
 * Makes the next renewal of `resource` that must take the guard fail, until
 * undone: a regular file where the guard directory goes (which no participant
 * removes: it is reported), and the lease file touched so the renewal cannot
 * be served from the service's last write. The lease file itself stays valid.
 */
async function blockGuard(lockDir: string, resource: string): Promise<void> {
  await writeFile(join(lockDir, `${resource}.lock.guard`), "");
  const later = new Date(Date.now() + 60_000);
  await utimes(join(lockDir, `${resource}.lock`), later, later);
}

async function unblockGuard(lockDir: string, resource: string): Promise<void> {
  await rm(join(lockDir, `${resource}.lock.guard`), { force: true });
}

function assertRenewed(answer: KeepAliveResponse, leaseId: string, what: string): void {
  assert.equal(answer.leaseId, leaseId, what);
  assert.equal(answer.expired, false, what);
  assert.equal(answer.error, undefined, `${what}: ${answer.error?.message}`);
  assert.ok(ms(answer.ttl) > 0 && answer.expiresAt !== undefined, what);
}

test("one stream, two leases: a lease file replaced by a directory answers expired, a blocked guard answers an error; the other lease keeps renewing", { timeout: 60_000 }, async () => {
  const fixture = await startServiceFixture();
  const stream = fixture.client.keepAlive();
  try {
    const broken = (await fixture.client.acquire({ resource: "broken", holder: "h", ttl: seconds(30) })).lease!;
    const blocked = (await fixture.client.acquire({ resource: "blocked", holder: "h", ttl: seconds(30) })).lease!;
    const healthy = (await fixture.client.acquire({ resource: "healthy", holder: "h", ttl: seconds(30) })).lease!;
    assertRenewed(await stream.renew(broken.leaseId), broken.leaseId, "the first renewal, before the faults");

    // As in the report: the lease file replaced by a directory.
    const path = join(fixture.lockDir, "broken.lock");
    await rm(path);
    await mkdir(path);
    await blockGuard(fixture.lockDir, "blocked");
    // Requests on one stream are served side by side: send all three, match the answers by lease id.
    const answers = await withTimeout(
      Promise.all([stream.renew(broken.leaseId), stream.renew(blocked.leaseId), stream.renew(healthy.leaseId)]),
      10_000,
      "all three answers",
    );
    const answerOf = (leaseId: string) => {
      const answer = answers.find((a) => a.leaseId === leaseId);
      assert.ok(answer, `one answer per lease: ${JSON.stringify(answers)}`);
      return answer;
    };
    const gone = answerOf(broken.leaseId);
    assert.equal(gone.expired, true, "a directory is no lease: that lease is lost");
    assert.equal(gone.error, undefined);
    const failed = answerOf(blocked.leaseId);
    assert.equal(failed.expired, false, "not known lost: the error says why it was not renewed");
    assert.equal(failed.expiresAt, undefined);
    assert.equal(failed.ttl, undefined);
    assert.equal(failed.error?.code, status.INTERNAL, failed.error?.message);
    assert.ok(failed.error?.message.includes(join(fixture.lockDir, "blocked.lock.guard")), `the message names the path: ${failed.error?.message}`);
    assert.ok(!failed.error?.message.includes(blocked.leaseId), "never the lease id");
    assertRenewed(answerOf(healthy.leaseId), healthy.leaseId, "the healthy lease on the same stream");

    // The stream is still open: the blocked lease fails again, then renews once the stray file is gone.
    assert.equal((await stream.renew(blocked.leaseId)).error?.code, status.INTERNAL);
    await unblockGuard(fixture.lockDir, "blocked");
    assertRenewed(await withTimeout(stream.renew(blocked.leaseId), 10_000, "the retry"), blocked.leaseId, "the retry once the guard is free");
    assertRenewed(await stream.renew(healthy.leaseId), healthy.leaseId, "the healthy lease, last");
    const ended = await Promise.race([stream.ended.then(() => "ended"), Promise.resolve("open")]);
    assert.equal(ended, "open", "the stream never ended");
  } finally {
    stream.end();
    await rm(join(fixture.lockDir, "broken.lock"), { recursive: true, force: true });
    await unblockGuard(fixture.lockDir, "blocked");
    await fixture.close();
  }
});

test("EACCES reading one lease's file (injected): UNAVAILABLE for that lease only, and it renews again once the fault is gone", { timeout: 30_000 }, async () => {
  const dir = await makeTempDir();
  const fs = new FaultyFileSystem();
  const service = await startService({ lockDir: dir.path, grpcListen: "127.0.0.1:0", httpListen: "127.0.0.1:0", fs });
  const client = new TestLockClient(service.grpcAddress);
  const stream = client.keepAlive();
  try {
    const denied = (await client.acquire({ resource: "denied", ttl: seconds(30) })).lease!;
    const healthy = (await client.acquire({ resource: "healthy", ttl: seconds(30) })).lease!;
    const deniedPath = join(dir.path, "denied.lock");
    // No identity and no rewrite in place mean the renewal cannot be served from its last write: it reads the file, and that fails.
    fs.fail("identity", "EACCES", { match: (p) => p === deniedPath });
    fs.fail("overwriteSynced", "EACCES", { match: (p) => p === deniedPath });
    fs.fail("readFileWithMtime", "EACCES", { match: (p) => p === deniedPath });
    const answers = await withTimeout(Promise.all([stream.renew(denied.leaseId), stream.renew(healthy.leaseId)]), 10_000, "both answers");
    const failed = answers.find((a) => a.leaseId === denied.leaseId)!;
    assert.equal(failed.error?.code, status.UNAVAILABLE, failed.error?.message);
    assert.match(failed.error!.message, /EACCES/);
    assert.equal(failed.expired, false);
    assertRenewed(answers.find((a) => a.leaseId === healthy.leaseId)!, healthy.leaseId, "the healthy lease");
    assert.ok(fs.injected >= 1);

    fs.heal();
    assertRenewed(await withTimeout(stream.renew(denied.leaseId), 10_000, "the retry"), denied.leaseId, "the retry after the fault is gone");
  } finally {
    stream.end();
    client.close();
    await service.stop();
    await dir.remove();
  }
});

test("TypeScript client: a lease whose renewals fail is retried sooner, recovers when the fault goes, and is lost at its confirmed expiry when it stays; the other lease is untouched", { timeout: 30_000 }, async () => {
  const fixture = await startServiceFixture();
  const client = new LockClient({ address: fixture.service.grpcAddress });
  try {
    const diagnostics = client[keepAliveDiagnostics];
    const blocked = await client.acquire("ts-blocked", { ttl: 2_000 });
    const healthy = await client.acquire("ts-healthy", { ttl: 2_000 });
    const lost = new Promise<{ reason: unknown; at: number }>((resolve) =>
      blocked.signal.addEventListener("abort", () => resolve({ reason: blocked.signal.reason, at: performance.now() }), { once: true }),
    );
    const nextEvent = <T extends { resource: string }>(name: string, resource: string) =>
      new Promise<T>((resolve) => {
        const listener = (event: T) => {
          if (event.resource !== resource) return;
          diagnostics.off(name, listener);
          resolve(event);
        };
        diagnostics.on(name, listener);
      });
    type Failure = { at: number; resource: string; code: number; message: string };

    // A fault that passes: failed tries, then renewed again, never lost.
    let failure = nextEvent<Failure>("renewal-failed", "ts-blocked");
    await blockGuard(fixture.lockDir, "ts-blocked");
    const first = await withTimeout(failure, 5_000, "a failed renewal of ts-blocked");
    assert.equal(first.code, status.INTERNAL);
    assert.match(first.message, /ts-blocked\.lock\.guard is not a directory/);
    const recovered = nextEvent("renewed", "ts-blocked");
    await unblockGuard(fixture.lockDir, "ts-blocked");
    await withTimeout(recovered, 2_000, "ts-blocked to renew once the fault is gone");
    assert.equal(blocked.signal.aborted, false);

    // A fault that stays: lost at the confirmed expiry, naming the failure.
    const failedBefore = diagnostics.stats.renewalsFailed;
    failure = nextEvent<Failure>("renewal-failed", "ts-blocked");
    await blockGuard(fixture.lockDir, "ts-blocked");
    const second = await withTimeout(failure, 5_000, "ts-blocked to fail again");
    const { reason, at } = await withTimeout(lost, 5_000, "ts-blocked to be lost");
    assert.ok(reason instanceof LeaseLostError, String(reason));
    assert.equal(reason.reason, "unconfirmed", "lost at its confirmed expiry, not at the first failed try");
    assert.match(reason.message, /the last renewal failed: .*is not a directory/);
    assert.ok(at > second.at, "not lost at the failure itself");
    // Retried at a tenth of the ttl rather than a third: several tries before the expiry.
    const tries = diagnostics.stats.renewalsFailed - failedBefore;
    assert.ok(tries >= 3, `failed tries before the loss: ${tries}`);
    await withTimeout(nextEvent("renewed", "ts-healthy"), 3_000, "ts-healthy to renew after ts-blocked was lost");
    assert.equal(healthy.signal.aborted, false);
    assert.equal(diagnostics.stats.streamsOpened, 1, "one stream throughout: it never broke");
    await healthy.release();
  } finally {
    await client[Symbol.asyncDispose]();
    await unblockGuard(fixture.lockDir, "ts-blocked");
    await fixture.close();
  }
});

test("Python client: a failing lease is retried and lost at its confirmed expiry; the other lease stays held", { timeout: 40_000 }, async () => {
  const fixture = await startServiceFixture();
  const py = await PythonLeaseDriver.start("grpc", fixture.service.grpcAddress);
  try {
    await py.ok({ op: "lock", id: "broken", resource: "py-broken", ttl: 2 });
    await py.ok({ op: "lock", id: "healthy", resource: "py-healthy", ttl: 2 });
    const before = await py.ok({ op: "state", id: "healthy" });
    await blockGuard(fixture.lockDir, "py-broken");
    const lost = await withTimeout(py.lost("broken"), 10_000, "py-broken to be lost");
    assert.equal(lost.reason, "unconfirmed", "lost when its confirmed expiry passed, not at the first failed try");
    const after = await py.ok({ op: "state", id: "healthy" });
    assert.equal(after.lost, false);
    assert.ok((after.renewals_failed ?? 0) >= 3, `retried sooner than ttl/3: ${after.renewals_failed} failed renewals`);
    assert.ok((after.renewals_confirmed ?? 0) > (before.renewals_confirmed ?? 0), "py-healthy kept renewing");
    assert.equal(after.streams_opened, 1, "one stream throughout: it never broke");
    assert.match(py.stderr(), /renewing the lease on "py-broken" failed \(INTERNAL\), retrying: .*py-broken\.lock\.guard is not a directory/);
    await py.ok({ op: "release", id: "healthy" });
  } finally {
    await py.close();
    await unblockGuard(fixture.lockDir, "py-broken");
    await fixture.close();
  }
});
