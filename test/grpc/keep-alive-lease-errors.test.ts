// One lease's file-system error must not end a KeepAlive stream that renews
// other leases (issue 14): the failing lease gets its own answer (an in-band
// `error`, or `expired` once its file is gone) and the others go on, on the
// same stream. Real gRPC against the service as a child process (directory in
// place of a lease file), in-process with an injected file system (EACCES,
// which root cannot get from chmod 000), and through the TypeScript and
// Python clients, which treat such an answer as a failed try of that lease.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, rename, rm, symlink } from "node:fs/promises";
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
 * Puts a directory where a lease file was, as in the report, in one
 * atomic step: a symbolic link to a directory renamed over the file (a
 * directory cannot be renamed over a file, and with an unlink then a mkdir
 * the service may read the name in between, find it absent and rightly
 * answer `expired`). Reading the lease file then fails with EISDIR.
 */
async function replaceByDirectory(path: string): Promise<void> {
  await mkdir(`${path}.dir`);
  await symlink(`${path}.dir`, `${path}.link`);
  await rename(`${path}.link`, path);
}

async function removeReplacement(path: string): Promise<void> {
  await rm(path, { force: true });
  await rm(`${path}.dir`, { recursive: true, force: true });
}

function assertRenewed(answer: KeepAliveResponse, leaseId: string, what: string): void {
  assert.equal(answer.leaseId, leaseId, what);
  assert.equal(answer.expired, false, what);
  assert.equal(answer.error, undefined, `${what}: ${answer.error?.message}`);
  assert.ok(ms(answer.ttl) > 0 && answer.expiresAt !== undefined, what);
}

test("a lease file replaced by a directory: that lease gets an INTERNAL error answer, the other lease on the stream keeps renewing", { timeout: 60_000 }, async () => {
  const fixture = await startServiceFixture();
  const path = join(fixture.lockDir, "broken.lock");
  const stream = fixture.client.keepAlive();
  try {
    const broken = (await fixture.client.acquire({ resource: "broken", holder: "h", ttl: seconds(30) })).lease!;
    const healthy = (await fixture.client.acquire({ resource: "healthy", holder: "h", ttl: seconds(30) })).lease!;
    assertRenewed(await stream.renew(broken.leaseId), broken.leaseId, "the first renewal, before the fault");

    await replaceByDirectory(path);
    // Requests on one stream are served side by side: send both, match the answers by lease id.
    const answers = await withTimeout(Promise.all([stream.renew(broken.leaseId), stream.renew(healthy.leaseId)]), 10_000, "both answers");
    const failed = answers.find((a) => a.leaseId === broken.leaseId);
    const renewed = answers.find((a) => a.leaseId === healthy.leaseId);
    assert.ok(failed && renewed, `one answer per lease: ${JSON.stringify(answers)}`);
    assert.equal(failed.expired, false, "not known lost: the error says why it was not renewed");
    assert.equal(failed.expiresAt, undefined);
    assert.equal(failed.ttl, undefined);
    assert.equal(failed.error?.code, status.INTERNAL, failed.error?.message);
    assert.match(failed.error?.message ?? "", /EISDIR/);
    assert.ok(failed.error?.message.includes(path), `the message names the path: ${failed.error?.message}`);
    assert.ok(!failed.error?.message.includes(broken.leaseId), "never the lease id");
    assertRenewed(renewed, healthy.leaseId, "the healthy lease on the same stream");

    // The stream is still open: both leases are answered again on it.
    const again = await withTimeout(Promise.all([stream.renew(healthy.leaseId), stream.renew(broken.leaseId)]), 10_000, "the second round");
    assertRenewed(again.find((a) => a.leaseId === healthy.leaseId)!, healthy.leaseId, "the healthy lease, second round");
    assert.equal(again.find((a) => a.leaseId === broken.leaseId)?.error?.code, status.INTERNAL);

    // Once the directory is gone the lease file is gone: that lease is lost, in-band too.
    await removeReplacement(path);
    const gone = await withTimeout(stream.renew(broken.leaseId), 10_000, "the renewal after the directory went");
    assert.equal(gone.expired, true);
    assert.equal(gone.error, undefined);
    assertRenewed(await stream.renew(healthy.leaseId), healthy.leaseId, "the healthy lease after the other was lost");
    const ended = await Promise.race([stream.ended.then(() => "ended"), Promise.resolve("open")]);
    assert.equal(ended, "open", "the stream never ended");
  } finally {
    stream.end();
    await removeReplacement(path);
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
    // No identity means the renewal cannot be served from its last write: it reads the file, and that fails.
    fs.fail("identity", "EACCES", { match: (p) => p === deniedPath });
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

test("TypeScript client: a failing lease is retried and lost at its confirmed expiry, naming the failure; the other lease stays held", { timeout: 30_000 }, async () => {
  const fixture = await startServiceFixture();
  const client = new LockClient({ address: fixture.service.grpcAddress });
  const path = join(fixture.lockDir, "ts-broken.lock");
  try {
    const diagnostics = client[keepAliveDiagnostics];
    const broken = await client.acquire("ts-broken", { ttl: 2_000 });
    const healthy = await client.acquire("ts-healthy", { ttl: 2_000 });
    const lost = new Promise<{ reason: unknown; at: number }>((resolve) =>
      broken.signal.addEventListener("abort", () => resolve({ reason: broken.signal.reason, at: performance.now() }), { once: true }),
    );
    const firstFailure = new Promise<{ at: number; code: number; message: string }>((resolve) =>
      diagnostics.on("renewal-failed", (event: { at: number; resource: string; code: number; message: string }) => {
        if (event.resource === "ts-broken") resolve(event);
      }),
    );
    // Renewals of ts-healthy, by the time they were confirmed.
    const healthyRenewals: number[] = [];
    diagnostics.on("renewed", (event: { at: number; resource: string }) => {
      if (event.resource === "ts-healthy") healthyRenewals.push(event.at);
    });

    await replaceByDirectory(path);
    const failure = await withTimeout(firstFailure, 5_000, "a failed renewal of ts-broken");
    assert.equal(failure.code, status.INTERNAL);
    assert.match(failure.message, /EISDIR/);

    const { reason, at } = await withTimeout(lost, 5_000, "ts-broken to be lost");
    assert.ok(reason instanceof LeaseLostError, String(reason));
    assert.equal(reason.reason, "unconfirmed", "lost at its confirmed expiry, not at the first failed try");
    assert.match(reason.message, /the last renewal failed: .*EISDIR/);
    assert.ok(at > failure.at, "not lost at the failure itself");
    // Retried at a tenth of the ttl rather than a third: several tries before the expiry.
    assert.ok(diagnostics.stats.renewalsFailed >= 3, `renewals failed: ${diagnostics.stats.renewalsFailed}`);
    assert.ok(healthyRenewals.some((t) => t > failure.at), "ts-healthy renewed after the failure");
    const renewedAfterLoss = new Promise<void>((resolve) =>
      diagnostics.on("renewed", (event: { resource: string }) => event.resource === "ts-healthy" && resolve()),
    );
    await withTimeout(renewedAfterLoss, 3_000, "ts-healthy to renew after ts-broken was lost");
    assert.equal(healthy.signal.aborted, false);
    assert.equal(diagnostics.stats.streamsOpened, 1, "one stream throughout: it never broke");
    await healthy.release();
  } finally {
    await client[Symbol.asyncDispose]();
    await removeReplacement(path);
    await fixture.close();
  }
});

test("Python client: a failing lease is retried and lost at its confirmed expiry; the other lease stays held", { timeout: 40_000 }, async () => {
  const fixture = await startServiceFixture();
  const py = await PythonLeaseDriver.start("grpc", fixture.service.grpcAddress);
  const path = join(fixture.lockDir, "py-broken.lock");
  try {
    await py.ok({ op: "lock", id: "broken", resource: "py-broken", ttl: 2 });
    await py.ok({ op: "lock", id: "healthy", resource: "py-healthy", ttl: 2 });
    const before = await py.ok({ op: "state", id: "healthy" });
    await replaceByDirectory(path);
    const lost = await withTimeout(py.lost("broken"), 10_000, "py-broken to be lost");
    assert.equal(lost.reason, "unconfirmed", "lost when its confirmed expiry passed, not at the first failed try");
    const after = await py.ok({ op: "state", id: "healthy" });
    assert.equal(after.lost, false);
    assert.ok((after.renewals_failed ?? 0) >= 3, `retried sooner than ttl/3: ${after.renewals_failed} failed renewals`);
    assert.ok((after.renewals_confirmed ?? 0) > (before.renewals_confirmed ?? 0), "py-healthy kept renewing");
    assert.equal(after.streams_opened, 1, "one stream throughout: it never broke");
    assert.match(py.stderr(), /renewing the lease on "py-broken" failed \(INTERNAL\), retrying: .*EISDIR/);
    await py.ok({ op: "release", id: "healthy" });
  } finally {
    await py.close();
    await removeReplacement(path);
    await fixture.close();
  }
});
