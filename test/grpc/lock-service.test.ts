// End-to-end tests of LockService against the real service as a child process:
// real gRPC over loopback, once on real lease files in a temp dir and once on
// a real etcd (the conformance suite of both stores; what only lease files
// can show is checked for the file store alone).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { access } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import type { ServiceProcess } from "../helpers/service-process.ts";
import { startServiceUnderTest, storesUnderTest, type ServiceUnderTest } from "../helpers/service-under-test.ts";
import { expectGrpcError, ms, type TestLockClient } from "../helpers/lock-client.ts";
import { assertValidLockDir, assertValidLeaseFile } from "../helpers/lease-file-schema.ts";
import { waitFor } from "../helpers/wait.ts";
import { EventReader } from "../helpers/event-reader.ts";
import { LockClient } from "../../src/client/index.ts";
import type { AcquireRequest, AcquireResponse, Lease } from "../../src/gen/mcplockd/v1/lock.ts";

// ---------------------------------------------------------------- helpers

const seconds = (s: number) => ({ seconds: Math.floor(s), nanos: Math.round((s - Math.floor(s)) * 1e9) });

/** A promise whose outcome can be inspected without awaiting it; never unhandled. */
interface Tracked<T> {
  promise: Promise<T>;
  settled: boolean;
  settledAt: number | undefined;
}
function track<T>(promise: Promise<T>): Tracked<T> {
  const tracked: Tracked<T> = { promise, settled: false, settledAt: undefined };
  const mark = () => {
    tracked.settled = true;
    tracked.settledAt = Date.now();
  };
  promise.then(mark, mark);
  return tracked;
}

/**
 * `next` follows `previous` with nobody granted in between: the file store's
 * counter gives the very next number; etcd's tokens are revisions, which
 * other writes move too, so only the order shows there.
 */
function assertNextToken(next: number, previous: number): void {
  if (dir !== undefined) assert.equal(next, previous + 1);
  else assert.ok(next > previous, `token ${next} is not above ${previous}`);
}

// ---------------------------------------------------------------- service

let fixture: ServiceUnderTest | undefined;
/** The lock dir with the file store; undefined with etcd. */
let dir: string | undefined;
let service: ServiceProcess;
let client: TestLockClient;

async function acquire(request: Partial<AcquireRequest> & { resource: string }): Promise<Lease> {
  const response: AcquireResponse = await client.acquire(request);
  assert.ok(response.lease, "AcquireResponse has a lease");
  return response.lease;
}

/** The listing entry of exactly `resource`, if it is held. */
async function lockOf(resource: string): Promise<Lease | undefined> {
  return (await client.listLocks(resource)).locks.find((lock) => lock.resource === resource);
}

async function leaseFileExists(lockDir: string, resource: string): Promise<boolean> {
  return access(join(lockDir, `${resource}.lock`)).then(
    () => true,
    () => false,
  );
}

/** With the file store, every lease file in the lock dir validates against the schema (else nothing to check). */
async function assertValidStore(): Promise<void> {
  if (dir !== undefined) await assertValidLockDir(dir);
}

// On etcd under Node only: the single executable and Deno run the etcd store in test/cli/serve-etcd.test.ts.
for (const kind of storesUnderTest()) describe(`LockService end to end (${kind} store)`, () => {
  before(async () => {
    fixture = await startServiceUnderTest(kind);
    ({ service, client } = fixture);
    dir = fixture.store.lockDir;
  });

  after(() => fixture?.close());

  test("acquire, renew over KeepAlive, release; the lease file validates", async () => {
    const before = Date.now();
    const lease = await acquire({ resource: "basic", holder: "holder-basic", ttl: seconds(20), metadata: { purpose: "e2e" } });
    const after = Date.now();
    assert.equal(lease.resource, "basic");
    assert.equal(lease.holder, "holder-basic");
    assert.equal(lease.state, "held");
    assert.deepEqual(lease.metadata, { purpose: "e2e" });
    assert.ok(lease.fencingToken >= 1);
    assert.equal(ms(lease.ttl), 20_000);
    assert.ok(ms(lease.acquiredAt) >= before - 5 && ms(lease.acquiredAt) <= after + 5, "acquired_at is the time of the call");
    assert.equal(ms(lease.expiresAt), ms(lease.acquiredAt) + 20_000);

    if (dir !== undefined) {
      const file = await assertValidLeaseFile(join(dir, "basic.lock"));
      assert.equal(file.holder, "holder-basic");
      assert.equal(file.fencing_token, lease.fencingToken);
      assert.equal(file.ttl, 20);
    }

    const stream = client.keepAlive();
    try {
      const sentAt = Date.now();
      const renewed = await stream.renew(lease.leaseId);
      const answeredAt = Date.now();
      assert.equal(renewed.leaseId, lease.leaseId);
      assert.equal(renewed.expired, false);
      assert.equal(ms(renewed.ttl), 20_000);
      assert.ok(ms(renewed.expiresAt) >= sentAt + 20_000 - 5 && ms(renewed.expiresAt) <= answeredAt + 20_000 + 5, "renewal sets expiry to now + ttl");
      const listed = await lockOf("basic");
      assert.equal(listed?.expiresAt && ms(listed.expiresAt), ms(renewed.expiresAt), "the listing shows the renewed expiry");
      await assertValidStore();
    } finally {
      stream.end();
    }
    assert.deepEqual(await client.release(lease.leaseId), { released: true });
    assert.equal(await lockOf("basic"), undefined);
    if (dir !== undefined) assert.equal(await leaseFileExists(dir, "basic"), false, "release removes the lease file");
  });

  test("lease ids carry >= 128 bits and never show in listings, the store (files or etcd) or logs", async () => {
    const ids = new Set<string>();
    const leases: Lease[] = [];
    for (let i = 0; i < 8; i++) {
      const lease = await acquire({ resource: `entropy-${i}`, holder: `entropy-holder-${i}`, ttl: seconds(30) });
      leases.push(lease);
      assert.match(lease.leaseId, /^[A-Za-z0-9_-]{22,}$/, "lease id is base64url of at least 22 characters");
      assert.ok(Buffer.from(lease.leaseId, "base64url").length >= 16, "lease id decodes to at least 16 bytes");
      ids.add(lease.leaseId);
    }
    assert.equal(ids.size, 8, "lease ids are unique");

    const listing = await client.listLocks("entropy-");
    assert.equal(listing.locks.length, 8);
    for (const lock of listing.locks) assert.equal(lock.leaseId, "", "lease_id is empty in listings");
    const listingText = JSON.stringify(listing);
    // Every entry below the lock dir (fencing counter dirs included), or every
    // key and value under the etcd prefix: names and contents.
    const stored = await fixture!.store.storedTexts();
    assert.ok(stored.some((text) => text.includes("entropy-holder-3")), "the store holds the leases (else this proves nothing)");
    for (const id of ids) {
      assert.ok(!listingText.includes(id), "a lease id leaked into ListLocks");
      for (const text of stored) assert.ok(!text.includes(id), `a lease id leaked into the ${kind} store`);
      assert.ok(!service.stderr().includes(id), "a lease id leaked into the service log");
    }
    if (dir !== undefined) assert.ok((await assertValidLockDir(dir)) >= 8);
    for (const lease of leases) await client.release(lease.leaseId);
  });

  test("try-once on a held resource is ABORTED with the holder and expiry in details", async () => {
    const lease = await acquire({ resource: "busy", holder: "busy-holder-42", ttl: seconds(40) });
    try {
      const expiry = new Date(ms(lease.expiresAt)).toISOString();
      await expectGrpcError(client.acquire({ resource: "busy", holder: "intruder" }), status.ABORTED, ["busy-holder-42", expiry, "busy"]);
      // An explicit zero wait_timeout is also a try-once.
      await expectGrpcError(client.acquire({ resource: "busy", holder: "intruder", waitTimeout: seconds(0) }), status.ABORTED, ["busy-holder-42", expiry]);
      assert.equal((await lockOf("busy"))?.holder, "busy-holder-42", "the failed tries changed nothing");
      assert.equal((await lockOf("busy"))?.waiters, 0, "a try-once never stays queued");
    } finally {
      await client.release(lease.leaseId);
    }
  });

  test("three queued waiters are granted in FIFO order with strictly increasing fencing tokens", async () => {
    const resource = "fifo";
    const first = await acquire({ resource, holder: "fifo-h0", ttl: seconds(60) });
    const waiters: Array<Tracked<AcquireResponse>> = [];
    for (let i = 1; i <= 3; i++) {
      waiters.push(track(client.acquire({ resource, holder: `fifo-w${i}`, ttl: seconds(60), waitTimeout: seconds(60) })));
      await waitFor(async () => (await lockOf(resource))?.waiters === i, `waiter ${i} to be queued`);
    }
    let previous = first;
    await client.release(first.leaseId);
    for (let i = 0; i < 3; i++) {
      const granted = (await waiters[i]!.promise).lease!;
      assert.equal(granted.holder, `fifo-w${i + 1}`, `waiter ${i + 1} is granted ${i === 0 ? "first" : "next"}`);
      assert.ok(granted.fencingToken > previous.fencingToken, `token ${granted.fencingToken} > ${previous.fencingToken}`);
      for (let j = i + 1; j < 3; j++) assert.equal(waiters[j]!.settled, false, `waiter ${j + 1} must still wait`);
      // etcd: the count comes from the replica's copy of the keys, which gets the granted waiter's queue key removal a moment later.
      if (dir === undefined) await waitFor(async () => (await lockOf(resource))?.waiters === 2 - i, `${2 - i} waiters listed`, 3_000);
      const listed = await lockOf(resource);
      assert.equal(listed?.holder, `fifo-w${i + 1}`);
      assert.equal(listed?.fencingToken, granted.fencingToken);
      assert.equal(listed?.waiters, 2 - i);
      await assertValidStore();
      await client.release(granted.leaseId);
      previous = granted;
    }
    assert.equal(await lockOf(resource), undefined);
  });

  test("a cancelled waiter and one whose deadline passed leave the queue and are never granted", async () => {
    const resource = "departed";
    // Every grant the service makes of it, as lock events (its tokens alone
    // show no gap only with the file store's counter).
    const watcher = new LockClient({ address: service.grpcAddress });
    const events = new EventReader(watcher.watch(resource));
    await events.until((event) => event.type === "SNAPSHOT_COMPLETE", "the watch's snapshot");
    const holder = await acquire({ resource, holder: "dep-holder", ttl: seconds(60) });
    const cancel = new AbortController();
    const cancelled = track(
      client.acquire({ resource, holder: "dep-cancelled", ttl: seconds(60), waitTimeout: seconds(60) }, { signal: cancel.signal }),
    );
    await waitFor(async () => (await lockOf(resource))?.waiters === 1, "the cancellable waiter to be queued");
    const deadlined = track(
      client.acquire({ resource, holder: "dep-deadline", ttl: seconds(60), waitTimeout: seconds(60) }, { deadlineMs: 2_000 }),
    );
    await waitFor(async () => (await lockOf(resource))?.waiters === 2, "the deadline waiter to be queued");
    const live = track(client.acquire({ resource, holder: "dep-live", ttl: seconds(60), waitTimeout: seconds(60) }));
    // (On a very slow machine the 2 s deadline may already have passed here.)
    await waitFor(async () => {
      const waiting = (await lockOf(resource))?.waiters;
      return waiting === 3 || (deadlined.settled && waiting === 2);
    }, "the live waiter to be queued");

    cancel.abort();
    await expectGrpcError(cancelled.promise, status.CANCELLED);
    await expectGrpcError(deadlined.promise, status.DEADLINE_EXCEEDED);
    const seenHolders = new Set<string>();
    await waitFor(async () => {
      const lock = await lockOf(resource);
      if (lock) seenHolders.add(lock.holder);
      return lock?.waiters === 1;
    }, "the departed waiters to leave the queue");
    assert.equal(live.settled, false, "the live waiter still waits");

    await client.release(holder.leaseId);
    const granted = (await live.promise).lease!;
    assert.equal(granted.holder, "dep-live");
    // Had a departed waiter been granted (even if undone at once), the
    // fencing counter would have moved past holder + 1. (etcd's tokens are
    // revisions, which every write moves: there only the order shows.)
    if (dir !== undefined) assert.equal(granted.fencingToken, holder.fencingToken + 1, "nobody was granted between the holder and the live waiter");
    else assert.ok(granted.fencingToken > holder.fencingToken);
    const listed = await lockOf(resource);
    assert.equal(listed?.holder, "dep-live");
    assert.equal(listed?.waiters, 0);
    seenHolders.add(listed!.holder);
    assert.deepEqual([...seenHolders].sort(), ["dep-holder", "dep-live"], "ListLocks never shows a departed waiter as holder");
    if (dir !== undefined) assert.equal((await assertValidLeaseFile(join(dir, `${resource}.lock`))).holder, "dep-live");
    await client.release(granted.leaseId);
    assert.equal(await lockOf(resource), undefined, "nothing is held once the live waiter releases");
    const next = await acquire({ resource, holder: "dep-after", ttl: seconds(5) });
    assertNextToken(next.fencingToken, granted.fencingToken);
    await client.release(next.leaseId);
    try {
      await events.until((event) => event.type === "RELEASED" && event.holder === "dep-after", "dep-after's release event");
      const holders = events.seen.filter((event) => ["ACQUIRED", "HANDED_OVER"].includes(event.type)).map((event) => event.holder);
      assert.deepEqual(holders, ["dep-holder", "dep-live", "dep-after"], "grants seen on the Watch stream");
    } finally {
      await events.close();
      await watcher[Symbol.asyncDispose]();
    }
  });

  test("a wait that runs out of wait_timeout is ABORTED and leaves the queue", async () => {
    const resource = "timeout";
    const holder = await acquire({ resource, holder: "timeout-holder", ttl: seconds(60) });
    try {
      const started = Date.now();
      await expectGrpcError(
        client.acquire({ resource, holder: "timeout-waiter", waitTimeout: seconds(0.6) }),
        status.ABORTED,
        ["timeout-holder", /wait_timeout/],
      );
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 500, `gave up after ${elapsed} ms, before the 600 ms wait_timeout`);
      assert.ok(elapsed < 10_000, `gave up only after ${elapsed} ms`);
      // etcd: the waiter's queue key is deleted just after the ABORTED answer
      // (the manager leaves shared queues once the waiter has settled), so
      // the cluster-wide count may show it for a moment.
      if (dir === undefined) await waitFor(async () => (await lockOf(resource))?.waiters === 0, "the timed-out waiter's queue key to go", 3_000);
      const listed = await lockOf(resource);
      assert.equal(listed?.holder, "timeout-holder");
      assert.equal(listed?.waiters, 0, "the timed-out waiter left the queue");
    } finally {
      await client.release(holder.leaseId);
    }
    // The timed-out waiter was never granted.
    const next = await acquire({ resource, holder: "timeout-next", ttl: seconds(5) });
    assertNextToken(next.fencingToken, holder.fencingToken);
    await client.release(next.leaseId);
  });

  test("KeepAlive keeps 1 s leases alive for 5+ ttls; after the stream ends they expire on time", async () => {
    const ttl = seconds(1);
    const a = await acquire({ resource: "ka-a", holder: "ka-holder", ttl });
    const b = await acquire({ resource: "ka-b", holder: "ka-holder", ttl });
    const stream = client.keepAlive();
    let lastA: number;
    let lastB: number;
    const waiter = { current: undefined as Tracked<AcquireResponse> | undefined };
    try {
      const started = Date.now();
      let renewals = 0;
      for (;;) {
        const sentAt = Date.now();
        const [ra, rb] = await Promise.all([stream.renew(a.leaseId), stream.renew(b.leaseId)]);
        const answeredAt = Date.now();
        assert.equal(ra.leaseId, a.leaseId);
        assert.equal(rb.leaseId, b.leaseId);
        assert.equal(ra.expired, false, `lease a was lost after ${answeredAt - started} ms`);
        assert.equal(rb.expired, false, `lease b was lost after ${answeredAt - started} ms`);
        for (const r of [ra, rb]) {
          const expiresAt = ms(r.expiresAt);
          assert.ok(expiresAt >= sentAt + 1_000 - 5 && expiresAt <= answeredAt + 1_000 + 5, "each renewal sets expiry to now + 1 s");
        }
        lastA = ms(ra.expiresAt);
        lastB = ms(rb.expiresAt);
        renewals++;
        if (answeredAt - started >= 5_500) break;
        await expectGrpcError(client.acquire({ resource: "ka-a", holder: "ka-other" }), status.ABORTED, ["ka-holder"]);
        await expectGrpcError(client.acquire({ resource: "ka-b", holder: "ka-other" }), status.ABORTED, ["ka-holder"]);
        const pause = sentAt + 300 - Date.now();
        if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
      }
      assert.ok(renewals >= 10, `only ${renewals} renewals in 5.5 s`);
      await assertValidStore();
    } finally {
      stream.end();
    }
    assert.equal(await stream.ended, undefined, "the stream ends cleanly when the client half-closes");
    const endedAt = Date.now();
    // Ending the stream releases nothing.
    if (endedAt < lastA! - 50) {
      await expectGrpcError(client.acquire({ resource: "ka-a", holder: "ka-other" }), status.ABORTED, ["ka-holder"]);
    }
    if (Date.now() < lastB! - 50) {
      await expectGrpcError(client.acquire({ resource: "ka-b", holder: "ka-other" }), status.ABORTED, ["ka-holder"]);
    }
    if (dir !== undefined) assert.ok(await leaseFileExists(dir, "ka-b"), "the lease file stays after the stream ends");
    // A waiter for a, nothing waits for b.
    waiter.current = track(client.acquire({ resource: "ka-a", holder: "ka-next", ttl: seconds(10), waitTimeout: seconds(15) }));
    let bGoneAt = 0;
    // Its lease file removed, or (etcd) no longer listed.
    const bGone = async () => (dir !== undefined ? !(await leaseFileExists(dir, "ka-b")) : (await lockOf("ka-b")) === undefined);
    await waitFor(async () => {
      if (!(await bGone())) return false;
      bGoneAt = Date.now();
      return true;
    }, "lease b to expire and be removed", 15_000, 10);
    const granted = (await waiter.current.promise).lease!;
    const grantedAt = waiter.current.settledAt!;
    assert.equal(granted.holder, "ka-next");
    assert.ok(granted.fencingToken > a.fencingToken);
    assert.ok(bGoneAt >= lastB! - 100, `lease b was removed ${lastB! - bGoneAt} ms before its expiry`);
    assert.ok(bGoneAt <= lastB! + 5_000, `lease b was removed ${bGoneAt - lastB!} ms after its expiry`);
    assert.ok(grantedAt >= lastA! - 100, `the waiter was granted ${lastA! - grantedAt} ms before lease a expired`);
    assert.ok(grantedAt <= lastA! + 5_000, `the waiter was granted ${grantedAt - lastA!} ms after lease a expired`);
    assert.equal((await lockOf("ka-a"))?.holder, "ka-next");
    assert.equal(await lockOf("ka-b"), undefined);
    // The expired leases are gone for good.
    await expectGrpcError(client.release(b.leaseId), status.NOT_FOUND);
    const late = client.keepAlive();
    try {
      assert.equal((await late.renew(a.leaseId)).expired, true);
    } finally {
      late.end();
    }
    await client.release(granted.leaseId);
  });

  test("KeepAlive answers unknown lease ids with expired=true and keeps the stream open", async () => {
    const lease = await acquire({ resource: "ka-unknown", holder: "ka-unknown-holder", ttl: seconds(10) });
    const stream = client.keepAlive();
    try {
      const bogus = randomBytes(32).toString("base64url");
      const r1 = await stream.renew(bogus);
      assert.equal(r1.leaseId, bogus);
      assert.equal(r1.expired, true);
      assert.equal(r1.expiresAt, undefined);
      const r2 = await stream.renew("");
      assert.equal(r2.expired, true);
      // At the length limit it is merely unknown; longer ones end the stream
      // with INVALID_ARGUMENT (test/grpc/limits.test.ts).
      const r3 = await stream.renew("x".repeat(128));
      assert.equal(r3.expired, true);
      const r4 = await stream.renew(lease.leaseId);
      assert.equal(r4.leaseId, lease.leaseId);
      assert.equal(r4.expired, false, "a real lease renews on the same stream after unknown ones");
      assert.ok(ms(r4.expiresAt) > ms(lease.expiresAt) - 1);
      await client.release(lease.leaseId);
      const r5 = await stream.renew(lease.leaseId);
      assert.equal(r5.expired, true, "a released lease is reported expired");
    } finally {
      stream.end();
    }
    assert.equal(await stream.ended, undefined);
  });

  test("one KeepAlive stream renews several leases, each response naming its lease", async () => {
    const leases = await Promise.all(
      [1, 2, 3].map((i) => acquire({ resource: `multi-${i}`, holder: `multi-holder-${i}`, ttl: seconds(10 + i) })),
    );
    const stream = client.keepAlive();
    try {
      for (let round = 0; round < 2; round++) {
        const responses = await Promise.all(leases.map((lease) => stream.renew(lease.leaseId)));
        responses.forEach((response, i) => {
          assert.equal(response.leaseId, leases[i]!.leaseId);
          assert.equal(response.expired, false);
          assert.equal(ms(response.ttl), (11 + i) * 1000);
          assert.ok(ms(response.expiresAt) >= ms(leases[i]!.expiresAt));
        });
      }
      await assertValidStore();
    } finally {
      stream.end();
    }
    for (const lease of leases) await client.release(lease.leaseId);
  });

  test("Release of an unknown or already released lease is NOT_FOUND", async () => {
    const bogus = randomBytes(32).toString("base64url");
    const details = await expectGrpcError(client.release(bogus), status.NOT_FOUND);
    assert.ok(!details.includes(bogus), "the lease id is not echoed");
    await expectGrpcError(client.release(""), status.NOT_FOUND);
    const lease = await acquire({ resource: "twice", holder: "twice-holder", ttl: seconds(10) });
    assert.deepEqual(await client.release(lease.leaseId), { released: true });
    await expectGrpcError(client.release(lease.leaseId), status.NOT_FOUND);
    assert.equal(await lockOf("twice"), undefined);
  });

  test("every lease file left in the lock dir validates against the schema", { skip: kind !== "file" && "lease files only" }, async () => {
    const lockDir = dir!;
    const held = await Promise.all(
      ["schema-a", "schema-b"].map((resource) =>
        acquire({ resource, holder: `ü-holder ${resource}`, ttl: seconds(2.5), metadata: { "team/role": "x", empty: "" } }),
      ),
    );
    assert.ok((await assertValidLockDir(lockDir)) >= 2);
    for (const lease of held) await client.release(lease.leaseId);
    await assertValidLockDir(lockDir);
  });

  test("holders' names and metadata come back as given, Unicode and all", async () => {
    const metadata = { "team/role": "x", empty: "", note: "çødé ✓" };
    const lease = await acquire({ resource: "unicode", holder: "ü-holder ✓", ttl: seconds(10), metadata });
    try {
      const listed = await lockOf("unicode");
      assert.equal(listed?.holder, "ü-holder ✓");
      assert.deepEqual(listed?.metadata, metadata);
      assert.equal(listed?.fencingToken, lease.fencingToken);
    } finally {
      await client.release(lease.leaseId);
    }
  });
});
