import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { AcquireInput, LockManager } from "../../src/core/lock-manager.ts";
import type { LockListing } from "../../src/core/lock-listing.ts";
import { ListLocksResponse } from "../../src/gen/mcplockd/v1/lock.ts";
import { encodeListedLease, toListedLease } from "../../src/grpc/convert.ts";
import { encodeHealthEntry, HEALTH_LOCKS_FRAMING, toHealthEntry } from "../../src/http/health-server.ts";
import { managerOnFiles } from "../helpers/manager-on-files.ts";
import { ManualClock, settle } from "../helpers/manual-clock.ts";
import { waitFor } from "../helpers/wait.ts";

// The cached listings (LockListing, issue 12) must answer byte for byte what
// building the answer afresh from LockManager.list() gives, as the lock set
// changes in every way it can.

const PREFIXES = ["", "a", "a-1", "b-", "c", "zzz"];

interface Harness {
  dir: string;
  clock: ManualClock;
  manager: LockManager;
  grpc: LockListing;
  http: LockListing;
}

async function setup(t: TestContext): Promise<Harness> {
  const { dir, clock, manager } = await managerOnFiles(t);
  return {
    dir,
    clock,
    manager,
    grpc: manager.cachedListing(({ state, waiters }) => encodeListedLease(state, waiters)),
    http: manager.cachedListing(({ state, waiters }) => encodeHealthEntry(state, waiters)),
  };
}

/** The cached answers against the answers built afresh the way the edges did before the cache. */
async function assertSameAsFresh(h: Harness, step: string): Promise<void> {
  for (const prefix of PREFIXES) {
    const locks = await h.manager.list(prefix);
    const freshGrpc = Buffer.from(ListLocksResponse.encode({ locks: locks.map(({ state, waiters }) => toListedLease(state, waiters)) }).finish());
    assert.deepEqual(await h.grpc.answer(prefix), freshGrpc, `ListLocks("${prefix}") after ${step}`);
    assert.deepEqual(ListLocksResponse.decode(await h.grpc.answer(prefix)).locks.length, locks.length);
  }
  const fresh = JSON.stringify({ locks: (await h.manager.list()).map(({ state, waiters }) => toHealthEntry(state, waiters)) }) + "\n";
  assert.equal((await h.http.answer("", undefined, HEALTH_LOCKS_FRAMING)).toString(), fresh, `/health/locks after ${step}`);
}

const waiting = (input: AcquireInput): AcquireInput => ({ ttlMs: 10_000, waitMs: 60_000, ...input });

test("cached listings equal fresh ones across grants, renewals, waiters, hand-overs, releases, expiries, force-releases and unreadable files", async (t) => {
  const h = await setup(t);
  await assertSameAsFresh(h, "start (empty)");

  const leases = new Map<string, string>();
  for (const resource of ["b-2", "a-1", "c", "a-10", "b-1"]) {
    const granted = await h.manager.acquire({ resource, holder: `h-${resource}`, ttlMs: 10_000, metadata: { job: resource } });
    leases.set(resource, granted.leaseId);
    await assertSameAsFresh(h, `granting ${resource}`);
  }

  await h.clock.advance(3_000);
  await h.manager.renew(leases.get("a-1")!);
  await assertSameAsFresh(h, "a renewal");

  // Waiters: two queue for a-1, one gives up, a try-once caller is refused.
  const leaving = new AbortController();
  const first = h.manager.acquire(waiting({ resource: "a-1", holder: "w1" }));
  const second = h.manager.acquire(waiting({ resource: "a-1", holder: "w2" }), leaving.signal);
  second.catch(() => {});
  await settle();
  await assertSameAsFresh(h, "two waiters");
  leaving.abort();
  await settle();
  await assertSameAsFresh(h, "a waiter leaving");
  await assert.rejects(h.manager.acquire({ resource: "c", holder: "try" }));
  await assertSameAsFresh(h, "a refused try-once acquire");

  // A hand-over, then a plain release.
  await h.manager.release(leases.get("a-1")!);
  const handedTo = await first;
  leases.set("a-1", handedTo.leaseId);
  await assertSameAsFresh(h, "a hand-over");
  await h.manager.release(leases.get("b-1")!);
  leases.delete("b-1");
  await assertSameAsFresh(h, "a release");

  // Expired but not yet reclaimed (the clock jumps past it without firing
  // timers): neither answer lists it; then the reclaim.
  await h.clock.advance(1_000);
  for (const resource of ["a-10", "b-2", "c"]) await h.manager.renew(leases.get(resource)!);
  h.clock.set(h.clock.now() + 9_500);
  await assertSameAsFresh(h, "a-1's lease expiring unreclaimed");
  await h.clock.advance(0);
  await assertSameAsFresh(h, "the reclaim of a-1");
  assert.deepEqual((await h.manager.list("a-1")).map(({ state }) => state.resource), ["a-10"], "a-1 expired, the others live");

  await h.manager.forceRelease("c", "operator", "stuck");
  await assertSameAsFresh(h, "a force-release");

  // A lease file another participant left unreadable.
  await writeFile(join(h.dir, "zzz-torn.lock"), '{"version":2,"reso');
  await waitFor(async () => (await h.manager.list("zzz")).length === 1, "the watch to see the unreadable file");
  await assertSameAsFresh(h, "an unreadable lease file");
});

test("cached listings equal fresh ones through 300 random operations", async (t) => {
  const h = await setup(t);
  // A fixed-seed generator: a failure replays.
  let seed = 12;
  const random = (n: number) => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed % n;
  };
  const names = Array.from({ length: 12 }, (_, i) => `${["a", "b-", "c"][i % 3]}${i}`);
  const held = new Map<string, string>();
  const pending = new Set<Promise<unknown>>();
  for (let step = 0; step < 300; step++) {
    const resource = names[random(names.length)]!;
    const leaseId = held.get(resource);
    const action = random(6);
    if (action === 0 && leaseId) await h.manager.renew(leaseId).catch(() => held.delete(resource));
    else if (action === 1 && leaseId) await h.manager.release(leaseId).catch(() => {});
    else if (action === 2) await h.clock.advance(random(4_000));
    else if (action === 3) await h.manager.forceRelease(resource, "op", "test");
    else {
      const acquiring = h.manager.acquire({ resource, holder: `s${step}`, ttlMs: 5_000, waitMs: action === 4 ? 0 : 2_000 });
      const tracked = acquiring.then((granted) => void held.set(resource, granted.leaseId), () => {}).finally(() => pending.delete(tracked));
      pending.add(tracked);
    }
    if (action === 1 || action === 3) held.delete(resource);
    await settle(2);
    await assertSameAsFresh(h, `step ${step}`);
  }
  await h.clock.advance(10_000);
  await Promise.all(pending);
  await assertSameAsFresh(h, "the end");
});
