// LockService.Watch against the real service (a child process, under the
// runtime MCP_LOCKD_TEST_RUNTIME names), read with the TypeScript client's
// watch(): the opening snapshot, every kind of change in order, changes made
// through the file protocol alone, bad prefixes, and no lease id anywhere;
// on either store (lease files, etcd), the file protocol on lease files only.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { LockClient, InvalidArgumentError, type LockEventInfo } from "../../src/client/index.ts";
import { startServiceUnderTest, storesUnderTest, type ServiceUnderTest } from "../helpers/service-under-test.ts";
import { EventReader } from "../helpers/event-reader.ts";

const seconds = (s: number) => ({ seconds: s, nanos: 0 });

for (const kind of storesUnderTest()) describe(`Watch (${kind} store)`, () => {
  let fixture: ServiceUnderTest | undefined;
  let client: LockClient;

  before(async () => {
    fixture = await startServiceUnderTest(kind);
    client = new LockClient({ address: fixture.service.grpcAddress });
  });
  after(async () => {
    await client?.[Symbol.asyncDispose]();
    await fixture?.close();
  });

  test("opens with the held resources, then sends acquire, waiters, hand-over, release and expiry in order", async () => {
    const raw = fixture!.client;
    const before = (await raw.acquire({ resource: "w1-before", holder: "early", ttl: seconds(60) })).lease!;
    const reader = new EventReader(client.watch("w1-"));
    const leaseIds = [before.leaseId];
    try {
      const held = await reader.next("the snapshot");
      assert.equal(held.type, "HELD");
      assert.equal(held.resource, "w1-before");
      assert.equal(held.holder, "early");
      assert.equal(held.fencingToken, BigInt(before.fencingToken));
      assert.equal(held.ttl, 60_000);
      assert.equal((await reader.next("the snapshot marker")).type, "SNAPSHOT_COMPLETE");

      // Outside the prefix: never seen.
      const other = (await raw.acquire({ resource: "x-other", holder: "elsewhere" })).lease!;
      leaseIds.push(other.leaseId);

      const first = (await raw.acquire({ resource: "w1-res", holder: "first", ttl: seconds(30) })).lease!;
      leaseIds.push(first.leaseId);
      const acquired = await reader.next("ACQUIRED");
      assert.deepEqual(
        { type: acquired.type, resource: acquired.resource, holder: acquired.holder, state: acquired.state, waiters: acquired.waiters },
        { type: "ACQUIRED", resource: "w1-res", holder: "first", state: "held", waiters: 0 },
      );
      assert.equal(acquired.fencingToken, BigInt(first.fencingToken));
      assert.ok(acquired.expiresAt && acquired.acquiredAt && acquired.expiresAt.getTime() - acquired.acquiredAt.getTime() === 30_000);

      const waiting = raw.acquire({ resource: "w1-res", holder: "second", waitTimeout: seconds(30) });
      const queued = await reader.next("WAITERS_CHANGED to 1");
      assert.deepEqual({ type: queued.type, waiters: queued.waiters, holder: queued.holder }, { type: "WAITERS_CHANGED", waiters: 1, holder: "first" });

      await raw.release(first.leaseId);
      const second = (await waiting).lease!;
      leaseIds.push(second.leaseId);
      const handedOver = await reader.next("HANDED_OVER");
      assert.equal(handedOver.type, "HANDED_OVER");
      assert.equal(handedOver.holder, "second");
      assert.equal(handedOver.previousHolder, "first");
      assert.equal(handedOver.previousFencingToken, BigInt(first.fencingToken));
      assert.equal(handedOver.fencingToken, BigInt(second.fencingToken));
      // etcd: counts come from the replica's copy of the keys, which may not
      // have the hand-over's removal of the waiter's queue key yet; then a
      // WAITERS_CHANGED to 0 follows as soon as it has.
      if (kind === "file" || handedOver.waiters === 0) assert.equal(handedOver.waiters, 0);
      else {
        assert.equal(handedOver.waiters, 1);
        const corrected = await reader.next("WAITERS_CHANGED to 0");
        assert.deepEqual({ type: corrected.type, waiters: corrected.waiters, holder: corrected.holder }, { type: "WAITERS_CHANGED", waiters: 0, holder: "second" });
      }

      await raw.release(second.leaseId);
      const released = await reader.next("RELEASED");
      assert.deepEqual({ type: released.type, state: released.state, holder: released.holder }, { type: "RELEASED", state: "free", holder: "second" });

      // A 1 s lease nobody renews (the raw client has no keeper).
      const short = (await raw.acquire({ resource: "w1-short", holder: "forgetful", ttl: seconds(1) })).lease!;
      leaseIds.push(short.leaseId);
      assert.equal((await reader.next("ACQUIRED of w1-short")).type, "ACQUIRED");
      const expired = await reader.next("EXPIRED", 5_000);
      assert.deepEqual({ type: expired.type, resource: expired.resource, holder: expired.holder, state: expired.state }, { type: "EXPIRED", resource: "w1-short", holder: "forgetful", state: "free" });

      const text = JSON.stringify(reader.seen, (_key, value) => (typeof value === "bigint" ? value.toString() : value));
      for (const id of leaseIds) assert.ok(!text.includes(id), "a lease id leaked into a watch event");
      assert.ok(!reader.seen.some((event) => event.resource === "x-other"), "the prefix filters events");
      await raw.release(other.leaseId);
    } finally {
      await reader.close();
      await raw.release(before.leaseId).catch(() => {});
    }
  });

  test("renewals by the client's keeper show as RENEWED with the new expiry", async () => {
    const reader = new EventReader(client.watch("w2-"));
    try {
      assert.equal((await reader.next()).type, "SNAPSHOT_COMPLETE");
      const lock = await client.acquire("w2-kept", { ttl: 1_500, holder: "keeper" });
      const acquired = await reader.next("ACQUIRED");
      assert.equal(acquired.type, "ACQUIRED");
      const renewed = await reader.until((event) => event.type === "RENEWED", "RENEWED", 3_000);
      assert.ok(renewed.expiresAt!.getTime() > acquired.expiresAt!.getTime(), "the expiry moved on");
      await lock.release();
      await reader.until((event) => event.type === "RELEASED", "RELEASED");
    } finally {
      await reader.close();
    }
  });

  test("sees leases taken and dropped through the file protocol alone", { skip: kind !== "file" && "lease files only" }, async () => {
    const dir = fixture!.store.lockDir!;
    const reader = new EventReader(client.watch("w3-"));
    const resource = "w3-file";
    try {
      assert.equal((await reader.next()).type, "SNAPSHOT_COMPLETE");
      const now = Date.now();
      const lease = {
        version: 1,
        resource,
        holder: "file-only-process",
        acquired_at: new Date(now).toISOString(),
        renewed_at: new Date(now).toISOString(),
        ttl: 120,
        expires_at: new Date(now + 120_000).toISOString(),
        fencing_token: 42,
        pid: process.pid,
        hostname: hostname(),
        metadata: {},
      };
      await writeFile(join(dir, `.${resource}.fence.tmp`), JSON.stringify({ version: 1, resource, fencing_token: 42 }) + "\n");
      await rename(join(dir, `.${resource}.fence.tmp`), join(dir, `${resource}.lock.fence`));
      await writeFile(join(dir, `.${resource}.tmp`), JSON.stringify(lease) + "\n");
      await rename(join(dir, `.${resource}.tmp`), join(dir, `${resource}.lock`));
      const acquired = await reader.next("ACQUIRED by the file-protocol process", 5_000);
      assert.deepEqual(
        { type: acquired.type, holder: acquired.holder, token: acquired.fencingToken },
        { type: "ACQUIRED", holder: "file-only-process", token: 42n },
      );
      await rm(join(dir, `${resource}.lock`));
      const released = await reader.next("RELEASED by the file-protocol process", 5_000);
      assert.deepEqual({ type: released.type, holder: released.holder }, { type: "RELEASED", holder: "file-only-process" });
    } finally {
      await reader.close();
    }
  });

  test("a bad prefix is INVALID_ARGUMENT naming the field", async () => {
    const reader = new EventReader(client.watch("no/slashes"));
    await assert.rejects(reader.next(), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError, String(err));
      assert.equal(err.field, "resource_prefix");
      return true;
    });
    // The service still serves.
    const lock = await client.acquire("w4-after-bad", {});
    await lock.release();
  });

  test("breaking out of the loop ends the watch; the service keeps serving watchers", async () => {
    const seen: LockEventInfo[] = [];
    for await (const event of client.watch("w5-")) {
      seen.push(event);
      break;
    }
    assert.equal(seen[0]?.type, "SNAPSHOT_COMPLETE");
    const reader = new EventReader(client.watch("w5-"));
    assert.equal((await reader.next()).type, "SNAPSHOT_COMPLETE");
    await reader.close();
  });
});
