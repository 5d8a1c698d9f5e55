import { sealLeaseDocument } from "../../src/store/lease-file-format.ts";
import { readFenceToken } from "../helpers/fence.ts";
import { describe, test } from "node:test";
import { fetchHealthLocks } from "../helpers/health-locks.ts";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { servicesOnStore, storesUnderTest, type ServicesOnStore, type StoreKind } from "../helpers/service-under-test.ts";
import { expectGrpcError, isServiceError, ms } from "../helpers/lock-client.ts";
import { exists } from "../helpers/fs.ts";
import { waitFor } from "../helpers/wait.ts";
import { EventReader } from "../helpers/event-reader.ts";
import { LockClient } from "../../src/client/index.ts";
import { assertValidLeaseFile, assertValidLockDir } from "../helpers/lease-file-schema.ts";
import type { Lease } from "../../src/gen/mcplockd/v1/lock.ts";

// The store is the source of truth: a service killed (or stopped) while
// leases are held comes back with the same leases, the same holders, and
// fencing tokens that only go up. Run on both stores; the lease files'
// horizons and fencing counters are checked for the file store alone.

const TTL_20S = { seconds: 20, nanos: 0 };
const WAIT_30S = { seconds: 30, nanos: 0 };

/**
 * A fresh store (a temp lock dir, or an etcd prefix); every service started on
 * it (on ports 0 each time: a restart may get other ports) and every client is
 * ended at the end.
 */
async function withHarness(kind: StoreKind, body: (h: ServicesOnStore) => Promise<void>): Promise<void> {
  const services = await servicesOnStore(kind);
  try {
    await body(services);
  } finally {
    await services.close();
  }
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function leaseOf(response: { lease: Lease | undefined }): Lease {
  assert.ok(response.lease, "Acquire answered without a lease");
  return response.lease;
}

/**
 * Validates `<dir>/<resource>.lock` against the schema and checks that it is
 * still this lease's file, that its expires_at is the horizon of its last
 * write (renewed_at + ttl + 1 s, docs/protocol.md) and that it covers what the
 * holder was promised (`promised`, else the lease's own expiry).
 */
async function assertLeaseFileOf(dir: string, lease: Lease, promised?: number): Promise<Record<string, unknown>> {
  const doc = await assertValidLeaseFile(join(dir, `${lease.resource}.lock`));
  assert.equal(doc.resource, lease.resource);
  assert.equal(doc.holder, lease.holder);
  assert.equal(doc.fencing_token, lease.fencingToken);
  assert.equal(doc.lease_id_sha256, sha256(lease.leaseId));
  const ttlMs = (doc.ttl as number) * 1000;
  const horizon = Date.parse(doc.renewed_at as string) + Math.min(ttlMs + 1_000, 3_600_000);
  assert.equal(doc.expires_at, new Date(horizon).toISOString());
  const promise = promised ?? ms(lease.expiresAt);
  assert.ok(horizon >= promise, `the file's horizon ${doc.expires_at} must cover the promise ${new Date(promise).toISOString()}`);
  return doc;
}

/** Moves every time in a lease file `byMs` into the past, as if that much time had gone by. */
async function backdateLeaseFile(path: string, byMs: number): Promise<void> {
  const doc = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
  for (const field of ["acquired_at", "renewed_at", "expires_at"]) {
    doc[field] = new Date(Date.parse(doc[field] as string) - byMs).toISOString();
  }
  delete doc.checksum;
  await writeFile(`${path}.backdate.tmp`, sealLeaseDocument(doc));
  await rename(`${path}.backdate.tmp`, path);
}

const fenceOf = readFenceToken;

// The first grant after a restart may wait for a waiter that died with the
// killed service to leave the queue (etcd: when its replica's session
// expires, a few seconds); with lease files it is at once.
const WAIT_10S = { seconds: 10, nanos: 0 };

for (const kind of storesUnderTest()) describe(`restarts (${kind} store)`, () => {

  test("SIGKILL while two leases are held and a third client waits: the leases survive the restart", { timeout: 60_000 }, async () => {
    await withHarness(kind, async (h) => {
      const dir = h.store.lockDir;
      const first = await h.start();
      const a = h.connect(first);
      const b = h.connect(first);
      const c = h.connect(first);
      const alpha = leaseOf(await a.acquire({ resource: "alpha", holder: "holder-a", ttl: TTL_20S }));
      const beta = leaseOf(await b.acquire({ resource: "beta", holder: "holder-b", ttl: TTL_20S }));
      // A third client queues for alpha; make sure it is waiting before the kill.
      const waiting = c.acquire({ resource: "alpha", holder: "holder-c", ttl: TTL_20S, waitTimeout: WAIT_30S });
      waiting.catch(() => {});
      await waitFor(async () => (await a.listLocks("alpha")).locks[0]?.waiters === 1, "holder-c to wait for alpha", 10_000, 20);
      if (dir) assert.equal(await assertValidLockDir(dir), 2);

      assert.equal(await first.stop("SIGKILL"), "SIGKILL");
      // The waiter loses its call with the connection; it was not granted anything.
      await assert.rejects(waiting, (err: unknown) => isServiceError(err) && err.code === status.UNAVAILABLE);
      let fenceAlpha = alpha.fencingToken;
      let fenceBeta = beta.fencingToken;
      if (dir) {
        // Between the kill and the release the files still name the original holders.
        assert.equal(await assertValidLockDir(dir), 2);
        await assertLeaseFileOf(dir, alpha);
        await assertLeaseFileOf(dir, beta);
        // The counters bound the tokens issued (the service reserves blocks: >=, not ==).
        fenceAlpha = await fenceOf(dir, "alpha");
        fenceBeta = await fenceOf(dir, "beta");
        assert.ok(fenceAlpha >= alpha.fencingToken, `alpha's fence ${fenceAlpha} < token ${alpha.fencingToken}`);
        assert.ok(fenceBeta >= beta.fencingToken, `beta's fence ${fenceBeta} < token ${beta.fencingToken}`);
      }

      const second = await h.start();
      // Every grant the restarted service makes of alpha, as lock events.
      const watcher = new LockClient({ address: second.grpcAddress });
      const events = new EventReader(watcher.watch("alpha"));
      await events.until((event) => event.type === "SNAPSHOT_COMPLETE", "the watch's snapshot");
      const intruder = h.connect(second);
      const a2 = h.connect(second);
      const b2 = h.connect(second);
      // Still held: another holder is refused, naming the original holder.
      await expectGrpcError(intruder.acquire({ resource: "alpha", holder: "intruder" }), status.ABORTED, [/"holder-a"/]);
      await expectGrpcError(intruder.acquire({ resource: "beta", holder: "intruder" }), status.ABORTED, [/"holder-b"/]);
      const listed = await fetchHealthLocks(second);
      if (dir) {
        // The killed service's promises (acquired + ttl) died with it: the restarted
        // one holds the leases until the horizon in their files, acquired + ttl + 1 s.
        assert.deepEqual(
          listed.map((e) => [e.resource, e.holder, e.fencing_token, e.expires_at, e.state]),
          [
            ["alpha", "holder-a", alpha.fencingToken, new Date(ms(alpha.acquiredAt) + 21_000).toISOString(), "held"],
            ["beta", "holder-b", beta.fencingToken, new Date(ms(beta.acquiredAt) + 21_000).toISOString(), "held"],
          ],
        );
        await assertLeaseFileOf(dir, alpha);
        await assertLeaseFileOf(dir, beta);
        assert.equal(await fenceOf(dir, "alpha"), fenceAlpha, "nothing raised alpha's counter");
        assert.equal(await fenceOf(dir, "beta"), fenceBeta, "nothing raised beta's counter");
      } else {
        // The store kept each lease with what its holder was promised, at least.
        assert.deepEqual(
          listed.map((e) => [e.resource, e.holder, e.fencing_token, e.state]),
          [
            ["alpha", "holder-a", alpha.fencingToken, "held"],
            ["beta", "holder-b", beta.fencingToken, "held"],
          ],
        );
        for (const [entry, lease] of [[listed[0]!, alpha], [listed[1]!, beta]] as const) {
          assert.ok(Date.parse(entry.expires_at) >= ms(lease.expiresAt), `${lease.resource} expires before its holder was promised`);
        }
      }

      // The holders renew with their original lease ids over new connections.
      const kaA = a2.keepAlive();
      const kaB = b2.keepAlive();
      const renewedA = await kaA.renew(alpha.leaseId);
      const renewedB = await kaB.renew(beta.leaseId);
      assert.equal(renewedA.expired, false);
      assert.equal(renewedB.expired, false);
      assert.ok(ms(renewedA.expiresAt) > ms(alpha.expiresAt), "alpha's renewed expiry is not later than before");
      assert.ok(ms(renewedB.expiresAt) > ms(beta.expiresAt), "beta's renewed expiry is not later than before");
      assert.equal(ms(renewedA.ttl), 20_000);
      if (dir) {
        await assertLeaseFileOf(dir, alpha, ms(renewedA.expiresAt));
        await assertLeaseFileOf(dir, beta, ms(renewedB.expiresAt));
      }
      kaA.end();
      kaB.end();

      assert.deepEqual(await a2.release(alpha.leaseId), { released: true });
      assert.deepEqual(await b2.release(beta.leaseId), { released: true });
      if (dir) {
        assert.equal(await assertValidLockDir(dir), 0);
        // Nobody was granted them in between: the lease files named the original holders, tokens and
        // lease ids until the release (checked above), and the counters were never raised (every grant
        // by the restarted service or any other participant would have raised them). The restarted
        // service's first grants are therefore exactly max(F, P) + 1 = F + 1.
        assert.equal(await fenceOf(dir, "alpha"), fenceAlpha, "nothing raised alpha's counter");
        assert.equal(await fenceOf(dir, "beta"), fenceBeta, "nothing raised beta's counter");
      }
      // holder-c died with the first service: it is never granted, and the intruder is next.
      const nextAlpha = leaseOf(await intruder.acquire({ resource: "alpha", holder: "intruder", waitTimeout: WAIT_10S }));
      const nextBeta = leaseOf(await intruder.acquire({ resource: "beta", holder: "intruder" }));
      assert.equal(nextAlpha.holder, "intruder");
      if (dir) {
        assert.equal(nextAlpha.fencingToken, fenceAlpha + 1);
        assert.equal(nextBeta.fencingToken, fenceBeta + 1);
        assert.ok((await fenceOf(dir, "alpha")) >= nextAlpha.fencingToken);
        assert.ok((await fenceOf(dir, "beta")) >= nextBeta.fencingToken);
        assert.equal(await assertValidLockDir(dir), 2);
      } else {
        assert.ok(nextAlpha.fencingToken > alpha.fencingToken, `alpha's token ${nextAlpha.fencingToken} is not above ${alpha.fencingToken}`);
        assert.ok(nextBeta.fencingToken > beta.fencingToken, `beta's token ${nextBeta.fencingToken} is not above ${beta.fencingToken}`);
      }
      await intruder.release(nextAlpha.leaseId);
      await intruder.release(nextBeta.leaseId);
      try {
        await events.until((event) => event.type === "RELEASED" && event.holder === "intruder", "the intruder's release of alpha");
        const granted = events.seen.filter((event) => ["ACQUIRED", "HANDED_OVER"].includes(event.type)).map((event) => event.holder);
        assert.deepEqual(granted, ["intruder"], "alpha's grants after the restart: holder-c, gone with its service, is not among them");
      } finally {
        await events.close();
        await watcher[Symbol.asyncDispose]();
      }
    });
  });

  test("a lease whose horizon passed while the service was down is reclaimed at start", { timeout: 60_000, skip: kind !== "file" && "lease files only: it moves a file's times back" }, async () => {
    await withHarness(kind, async (h) => {
      const dir = h.store.lockDir!;
      const first = await h.start();
      const owner = h.connect(first);
      const short = leaseOf(await owner.acquire({ resource: "ephemeral", holder: "short-lived", ttl: { seconds: 1, nanos: 0 } }));
      assert.equal(await first.stop("SIGKILL"), "SIGKILL");
      const leaseFile = join(dir, "ephemeral.lock");
      await assertLeaseFileOf(dir, short);
      const fenceBefore = await fenceOf(dir, "ephemeral");
      assert.ok(fenceBefore >= short.fencingToken, `fence ${fenceBefore} < token ${short.fencingToken}`);

      // Let the horizon in the file pass while nothing is running (the promise
      // of the killed service died with it; the file is what counts): move
      // the file's times back past the second of headroom, the way time would
      // have.
      await backdateLeaseFile(leaseFile, Date.now() - ms(short.expiresAt) + 1_000 + 200);
      assert.ok(await exists(leaseFile), "the lease file went away while no service was running");

      const second = await h.start();
      await waitFor(async () => !(await exists(leaseFile)), "the expired lease file to be removed", 10_000, 20);
      const other = h.connect(second);
      assert.deepEqual((await other.listLocks()).locks, []);
      assert.deepEqual((await fetchHealthLocks(second)).map((e) => e.resource), []);
      // The old lease is gone for its holder too.
      const owner2 = h.connect(second);
      const ka = owner2.keepAlive();
      assert.equal((await ka.renew(short.leaseId)).expired, true);
      ka.end();
      await expectGrpcError(owner2.release(short.leaseId), status.NOT_FOUND);

      // Grantable at once (try once), with the next token of the restarted service: F + 1, above the
      // block the first service reserved (the reclaim did not need to raise the counter).
      assert.equal(await fenceOf(dir, "ephemeral"), fenceBefore);
      const next = leaseOf(await other.acquire({ resource: "ephemeral", holder: "next" }));
      assert.ok(next.fencingToken > short.fencingToken);
      assert.equal(next.fencingToken, fenceBefore + 1);
      await assertLeaseFileOf(dir, next);
      assert.deepEqual(await other.release(next.leaseId), { released: true });
    });
  });

  test("fencing tokens keep strictly increasing across a SIGKILL and restart", { timeout: 60_000 }, async () => {
    await withHarness(kind, async (h) => {
      const dir = h.store.lockDir;
      const first = await h.start();
      const client = h.connect(first);
      const before: number[] = [];
      for (let i = 0; i < 3; i++) {
        const lease = leaseOf(await client.acquire({ resource: "fenced", holder: `round-${i}` }));
        if (dir) await assertLeaseFileOf(dir, lease);
        before.push(lease.fencingToken);
        assert.deepEqual(await client.release(lease.leaseId), { released: true });
      }
      if (dir) {
        // One service, no other writer: consecutive tokens from its reserved block.
        assert.deepEqual(before, [before[0]!, before[0]! + 1, before[0]! + 2]);
      } else {
        assert.ok(before[0]! < before[1]! && before[1]! < before[2]!, `tokens ${before.join(", ")} do not increase`);
      }
      assert.equal(await first.stop("SIGKILL"), "SIGKILL");
      let fenceBefore = before[2]!;
      if (dir) {
        assert.equal(await assertValidLockDir(dir), 0);
        fenceBefore = await fenceOf(dir, "fenced");
        assert.ok(fenceBefore >= before[2]!, `fence ${fenceBefore} < last token ${before[2]}`);
      }

      const second = await h.start();
      const client2 = h.connect(second);
      const after = leaseOf(await client2.acquire({ resource: "fenced", holder: "after-restart" }));
      assert.ok(after.fencingToken > before[2]!, `token ${after.fencingToken} after restart is not above ${before[2]}`);
      if (dir) {
        // The restarted service knows nothing of the old block: it starts above it, at F + 1.
        assert.equal(after.fencingToken, fenceBefore + 1);
        assert.ok((await fenceOf(dir, "fenced")) >= after.fencingToken);
        await assertLeaseFileOf(dir, after);
      }
      assert.deepEqual(await client2.release(after.leaseId), { released: true });
      const again = leaseOf(await client2.acquire({ resource: "fenced", holder: "after-restart" }));
      if (dir) {
        assert.equal(again.fencingToken, after.fencingToken + 1);
        assert.ok((await fenceOf(dir, "fenced")) >= again.fencingToken);
      } else {
        assert.ok(again.fencingToken > after.fencingToken);
      }
      await client2.release(again.leaseId);
    });
  });

  test("SIGTERM with a held lease: exit 0, the lease stays in the store, and it is still valid after restart", { timeout: 60_000 }, async () => {
    await withHarness(kind, async (h) => {
      const dir = h.store.lockDir;
      const first = await h.start();
      const holder = h.connect(first);
      const waiter = h.connect(first);
      const lease = leaseOf(await holder.acquire({ resource: "graceful", holder: "holder-g", ttl: TTL_20S }));
      const ka = holder.keepAlive();
      const renewed = await ka.renew(lease.leaseId);
      assert.equal(renewed.expired, false);
      const waiting = waiter.acquire({ resource: "graceful", holder: "holder-w", ttl: TTL_20S, waitTimeout: WAIT_30S });
      waiting.catch(() => {});
      await waitFor(async () => (await holder.listLocks("graceful")).locks[0]?.waiters === 1, "holder-w to wait for graceful", 10_000, 20);

      assert.equal(await first.stop("SIGTERM"), 0, `graceful stop did not exit 0:\n${first.stderr()}`);
      // The waiter is told to come back later, not granted; the keepalive stream ends.
      await expectGrpcError(waiting, status.UNAVAILABLE);
      await ka.ended;
      let fenceBefore = lease.fencingToken;
      if (dir) {
        assert.equal(await assertValidLockDir(dir), 1);
        await assertLeaseFileOf(dir, lease, ms(renewed.expiresAt));
        fenceBefore = await fenceOf(dir, "graceful");
        assert.ok(fenceBefore >= lease.fencingToken, `fence ${fenceBefore} < token ${lease.fencingToken}`);
      }

      const second = await h.start();
      const other = h.connect(second);
      const holder2 = h.connect(second);
      await expectGrpcError(other.acquire({ resource: "graceful", holder: "other" }), status.ABORTED, [/"holder-g"/]);
      assert.deepEqual(
        (await fetchHealthLocks(second)).map((e) => [e.resource, e.holder, e.fencing_token]),
        [["graceful", "holder-g", lease.fencingToken]],
      );
      // A graceful stop takes its waiters out of the queue (etcd: out of the shared queue, at once).
      assert.equal((await other.listLocks("graceful")).locks[0]?.waiters, 0, "holder-w is still queued after the stop");
      const ka2 = holder2.keepAlive();
      const renewedAgain = await ka2.renew(lease.leaseId);
      assert.equal(renewedAgain.expired, false);
      assert.ok(ms(renewedAgain.expiresAt) > ms(renewed.expiresAt), "the renewed expiry is not later than before");
      if (dir) await assertLeaseFileOf(dir, lease, ms(renewedAgain.expiresAt));
      ka2.end();
      assert.deepEqual(await holder2.release(lease.leaseId), { released: true });
      // The lease file named holder-g with its token and lease id throughout (checked above) and the
      // counter was not raised, so nobody was granted "graceful" in between; the restarted service's
      // first grant is F + 1. (holder-w's wait was ended by the stop: it is never granted.)
      if (dir) assert.equal(await fenceOf(dir, "graceful"), fenceBefore);
      const next = leaseOf(await other.acquire({ resource: "graceful", holder: "other", waitTimeout: WAIT_10S }));
      assert.equal(next.holder, "other");
      assert.ok(next.fencingToken > lease.fencingToken);
      if (dir) {
        assert.equal(next.fencingToken, fenceBefore + 1);
        assert.equal(await assertValidLockDir(dir), 1);
      }
      await other.release(next.leaseId);
    });
  });
});
