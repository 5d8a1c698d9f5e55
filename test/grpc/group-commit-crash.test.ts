import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { servicesOnStore } from "../helpers/service-under-test.ts";
import { assertValidLeaseFile } from "../helpers/lease-file-schema.ts";
import type { Lease } from "../../src/gen/mcplockd/v1/lock.ts";

// With its fsyncs on the thread pool (--fsync pool, the default), concurrent
// grants share the lock dir's fsync: a grant is answered only once an fsync
// of the dir that started after its link has ended. A SIGKILL lands while
// many grants are between their link and that shared fsync, or waiting for
// it; every grant that was answered is still held after the restart, by the
// same lease id and token. (A SIGKILL keeps the page cache, so this checks
// the order of commit and answer, not the disk itself: that order is
// test/store/group-commit.test.ts's, with every call recorded.)

const CLIENTS = 32;
const ANSWERS_BEFORE_KILL = 200;

test("SIGKILL during group-committed grants on 32 resources at once: every answered grant is held after the restart", { timeout: 90_000 }, async () => {
  const h = await servicesOnStore("file", { extraArgs: ["--fsync", "pool"] });
  try {
    const dir = h.store.lockDir!;
    const first = await h.start();
    const answered: Lease[] = [];
    let killed = false;
    let enough!: () => void;
    const reachedEnough = new Promise<void>((resolve) => (enough = resolve));
    // Each client takes new resources back to back and keeps every lease; the
    // kill finds some grants answered and others anywhere in their writes.
    const clients = Array.from({ length: CLIENTS }, async (_, i) => {
      const client = h.connect(first);
      for (let n = 0; !killed; n++) {
        let lease: Lease | undefined;
        try {
          lease = (await client.acquire({ resource: `gc-${i}-${n}`, holder: `client-${i}`, ttl: { seconds: 60, nanos: 0 } })).lease;
        } catch (err) {
          if (killed) return;
          throw err;
        }
        assert.ok(lease, "Acquire answered without a lease");
        answered.push(lease);
        if (answered.length >= ANSWERS_BEFORE_KILL) enough();
      }
    });
    const clientsDone = Promise.all(clients);
    await Promise.race([reachedEnough, clientsDone]);
    killed = true;
    assert.equal(await first.stop("SIGKILL"), "SIGKILL");
    await clientsDone;
    const kept = [...answered];
    assert.ok(kept.length >= ANSWERS_BEFORE_KILL, `only ${kept.length} grants answered before the kill`);

    for (const lease of kept) {
      const doc = await assertValidLeaseFile(join(dir, `${lease.resource}.lock`));
      assert.equal(doc.fencing_token, lease.fencingToken, `${lease.resource}: the file's token`);
      assert.equal(doc.holder, lease.holder, `${lease.resource}: the file's holder`);
    }

    const second = await h.start();
    const client = h.connect(second);
    const listed = new Map((await client.listLocks("gc-")).locks.map((lock) => [lock.resource, lock]));
    for (const lease of kept) {
      const lock = listed.get(lease.resource);
      assert.equal(lock?.fencingToken, lease.fencingToken, `${lease.resource}: held after the restart with the token answered`);
      assert.equal(lock?.holder, lease.holder);
    }
    // Their holders renew them by the lease ids they were given.
    const stream = client.keepAlive();
    try {
      for (const lease of kept) {
        const renewed = await stream.renew(lease.leaseId);
        assert.equal(renewed.expired, false, `${lease.resource}: its holder's renewal after the restart`);
      }
    } finally {
      stream.end();
    }
  } finally {
    await h.close();
  }
});
