// grpc.health.v1.Health against a real service: SERVING when it can serve,
// NOT_SERVING while it starts, once shutdown begins, and while the lock dir
// cannot be written; Watch streams follow every change.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { startService, type RunningService } from "../../src/service.ts";
import { FaultyFileSystem } from "../helpers/faulty-file-system.ts";
import { healthCheck, healthList, listServices, watchHealth, type HealthWatch } from "../helpers/introspection-client.ts";
import { expectGrpcError, TestLockClient } from "../helpers/lock-client.ts";
import { startServiceProcess, type ServiceProcess } from "../helpers/service-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { withTimeout } from "../helpers/wait.ts";

const LOCK_SERVICE = "mcplockd.v1.LockService";
// Watch re-probes the lock dir every 2 s: a change shows within that, plus margin.
const CHANGE_MS = 15_000;

function closeAll(watches: HealthWatch[]): void {
  for (const watch of watches) watch.cancel();
}

test("Check, Watch and List: SERVING for \"\" and LockService; unknown services NOT_FOUND / SERVICE_UNKNOWN", async () => {
  const dir = await makeTempDir();
  const service = await startServiceProcess({ lockDir: join(dir.path, "locks") });
  const watches: HealthWatch[] = [];
  try {
    assert.equal(await healthCheck(service.grpcAddress, ""), "SERVING");
    assert.equal(await healthCheck(service.grpcAddress, LOCK_SERVICE), "SERVING");
    await expectGrpcError(healthCheck(service.grpcAddress, "no.such.Service"), status.NOT_FOUND, ["no.such.Service"]);
    assert.deepEqual(await healthList(service.grpcAddress), { "": "SERVING", [LOCK_SERVICE]: "SERVING" });

    const overall = watchHealth(service.grpcAddress, "");
    const lock = watchHealth(service.grpcAddress, LOCK_SERVICE);
    const unknown = watchHealth(service.grpcAddress, "no.such.Service");
    watches.push(overall, lock, unknown);
    assert.equal(await withTimeout(overall.next(), CHANGE_MS, "Watch(\"\")"), "SERVING");
    assert.equal(await withTimeout(lock.next(), CHANGE_MS, "Watch(LockService)"), "SERVING");
    assert.equal(await withTimeout(unknown.next(), CHANGE_MS, "Watch(unknown)"), "SERVICE_UNKNOWN");

    // An unknown service's Watch stays open (the protocol says so) until the client leaves.
    unknown.cancel();
    const end = await withTimeout(unknown.ended, CHANGE_MS, "the cancelled Watch to end");
    assert.equal(end?.code, status.CANCELLED, `the unknown-service Watch was still open, then cancelled: ${end?.details}`);
  } finally {
    closeAll(watches);
    await service.stop();
    await dir.remove();
  }
});

test("while the lease files load: NOT_SERVING and lock calls UNAVAILABLE (starting); then SERVING with the leases known", async () => {
  const dir = await makeTempDir();
  const lockDir = join(dir.path, "locks");
  const options = { lockDir, grpcListen: "127.0.0.1:0", httpListen: "127.0.0.1:0" };
  // A lease left by a previous run: once ready, the service must know it is held.
  const first = await startService(options);
  const firstClient = new TestLockClient(first.grpcAddress);
  try {
    await firstClient.acquire({ resource: "left-held", holder: "previous-run", ttl: { seconds: 120, nanos: 0 } });
  } finally {
    firstClient.close();
    await first.stop();
  }

  // Hold the load (its readdir of the lock dir) until the checks are done.
  const fs = new FaultyFileSystem();
  const load = fs.gate("readdir", (path) => path === lockDir);
  let listening!: (address: string) => void;
  const bound = new Promise<string>((resolve) => (listening = resolve));
  const starting = startService({ ...options, fs, onGrpcListening: listening });
  starting.catch(() => {}); // awaited below; a failure must not go unhandled meanwhile
  let service: RunningService | undefined;
  let client: TestLockClient | undefined;
  const watches: HealthWatch[] = [];
  try {
    const address = await withTimeout(bound, 10_000, "the gRPC server to bind");
    await withTimeout(load.reached, 10_000, "the load to reach the lock dir");
    client = new TestLockClient(address);

    assert.equal(await healthCheck(address, ""), "NOT_SERVING");
    assert.equal(await healthCheck(address, LOCK_SERVICE), "NOT_SERVING");
    const watch = watchHealth(address, LOCK_SERVICE);
    watches.push(watch);
    assert.equal(await withTimeout(watch.next(), CHANGE_MS, "the first Watch answer"), "NOT_SERVING");

    await expectGrpcError(client.listLocks(), status.UNAVAILABLE, ["starting"], "ListLocks while starting");
    await expectGrpcError(client.acquire({ resource: "left-held" }), status.UNAVAILABLE, ["starting"], "Acquire while starting");
    await expectGrpcError(client.release("some-lease-id"), status.UNAVAILABLE, ["starting"], "Release while starting");
    const keepAlive = client.keepAlive();
    const keepAliveEnd = await withTimeout(keepAlive.ended, 10_000, "KeepAlive to be refused");
    assert.equal(keepAliveEnd?.code, status.UNAVAILABLE, `KeepAlive while starting: ${keepAliveEnd?.details}`);
    assert.match(keepAliveEnd?.details ?? "", /starting/);
    // Reflection does not depend on the lock dir: it answers already.
    assert.ok((await listServices(address)).includes(LOCK_SERVICE));

    load.open();
    service = await withTimeout(starting, 10_000, "startService to finish");
    assert.equal(await withTimeout(watch.next(), CHANGE_MS, "Watch to see the service ready"), "SERVING");
    assert.equal(await healthCheck(address, ""), "SERVING");
    const { locks } = await client.listLocks();
    assert.deepEqual(locks.map((l) => [l.resource, l.holder]), [["left-held", "previous-run"]]);
    await expectGrpcError(client.acquire({ resource: "left-held" }), status.ABORTED, ["previous-run"], "the loaded lease holds");
  } finally {
    closeAll(watches);
    client?.close();
    load.open();
    service ??= await starting.catch(() => undefined);
    await service?.stop();
    await dir.remove();
  }
});

test("shutdown (SIGTERM): Watch streams get NOT_SERVING, then end with OK", async () => {
  const dir = await makeTempDir();
  const service = await startServiceProcess({ lockDir: dir.path });
  const watches = [watchHealth(service.grpcAddress, ""), watchHealth(service.grpcAddress, LOCK_SERVICE)];
  try {
    for (const watch of watches) assert.equal(await withTimeout(watch.next(), CHANGE_MS, "SERVING before SIGTERM"), "SERVING");
    const exited = service.stop("SIGTERM");
    for (const watch of watches) {
      assert.equal(await withTimeout(watch.next(), CHANGE_MS, "NOT_SERVING after SIGTERM"), "NOT_SERVING");
      const end = await withTimeout(watch.ended, CHANGE_MS, "the Watch stream to end");
      assert.equal(end, undefined, `the Watch ended with an error instead of OK: ${end?.code} ${end?.details}`);
    }
    assert.equal(await withTimeout(exited, 20_000, "the service to exit"), 0, service.stderr());
  } finally {
    closeAll(watches);
    await service.stop("SIGKILL");
    await dir.remove();
  }
});

test("a lock dir that stops being writable: NOT_SERVING (Watch and Check); back to SERVING once restored", async () => {
  const dir = await makeTempDir();
  const lockDir = join(dir.path, "locks");
  const away = join(dir.path, "locks.away");
  const service = await startServiceProcess({ lockDir });
  const client = new TestLockClient(service.grpcAddress);
  const watches: HealthWatch[] = [];
  try {
    const watch = watchHealth(service.grpcAddress, LOCK_SERVICE);
    watches.push(watch);
    assert.equal(await withTimeout(watch.next(), CHANGE_MS, "SERVING at first"), "SERVING");
    assert.equal(await healthCheck(service.grpcAddress, ""), "SERVING");

    // The lock dir's path becomes a regular file: nothing can be created in it.
    await rename(lockDir, away);
    await writeFile(lockDir, "not a directory\n");
    assert.equal(await withTimeout(watch.next(), CHANGE_MS, "Watch to see the lock dir unwritable"), "NOT_SERVING");
    // Check shares the probe Watch just made (at most a second old).
    assert.equal(await healthCheck(service.grpcAddress, LOCK_SERVICE), "NOT_SERVING");
    assert.equal(await healthCheck(service.grpcAddress, ""), "NOT_SERVING");
    await expectGrpcError(client.acquire({ resource: "r" }), status.UNAVAILABLE, ["ENOTDIR"], "Acquire with the dir gone");
    assert.match(service.stderr(), /health NOT_SERVING: .*ENOTDIR/);

    await rm(lockDir);
    await rename(away, lockDir);
    assert.equal(await withTimeout(watch.next(), CHANGE_MS, "Watch to see the lock dir restored"), "SERVING");
    assert.equal(await healthCheck(service.grpcAddress, ""), "SERVING");
    const { lease } = await client.acquire({ resource: "r" });
    assert.equal(lease?.resource, "r");
    assert.match(service.stderr(), /writable again/);
  } finally {
    closeAll(watches);
    client.close();
    await service.stop();
    await dir.remove();
  }
});

test("--lock-dir under a regular file: NOT_SERVING from the start", async () => {
  const dir = await makeTempDir();
  const file = join(dir.path, "a-file");
  await writeFile(file, "");
  const service: ServiceProcess = await startServiceProcess({ lockDir: join(file, "locks") });
  const watches: HealthWatch[] = [];
  try {
    assert.equal(await healthCheck(service.grpcAddress, ""), "NOT_SERVING");
    assert.equal(await healthCheck(service.grpcAddress, LOCK_SERVICE), "NOT_SERVING");
    const watch = watchHealth(service.grpcAddress, "");
    watches.push(watch);
    assert.equal(await withTimeout(watch.next(), CHANGE_MS, "the first Watch answer"), "NOT_SERVING");
    assert.deepEqual(await healthList(service.grpcAddress), { "": "NOT_SERVING", [LOCK_SERVICE]: "NOT_SERVING" });

    // Fixing it (the file becomes a dir) makes it SERVING without a restart.
    await rm(file);
    await mkdir(join(file, "locks"), { recursive: true });
    assert.equal(await withTimeout(watch.next(), CHANGE_MS, "Watch to see the lock dir usable"), "SERVING");
  } finally {
    closeAll(watches);
    await service.stop();
    await dir.remove();
  }
});
