// Releases pay no fsync (issue 12): losing a release in a power cut only
// keeps the lease held until it expires, which is safe, so no release waits
// for the disk. A hand-over's release half likewise: it pays for the grant it
// makes (the next holder's lease must be durable before anyone learns of it)
// and for nothing more. Checked through the lock manager, with a file system
// that records every call the store makes; any call whose name says it syncs
// (fsync, fdatasync, "...Synced") counts, so a new kind of durable write is
// caught too.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import type { LockManager } from "../../src/core/lock-manager.ts";
import { nodeFileSystem, type FileSystem } from "../../src/store/file-system.ts";
import { managerOnFiles } from "../helpers/manager-on-files.ts";
import { settle, type ManualClock } from "../helpers/manual-clock.ts";

const SYNCS = /sync/i;

/** nodeFileSystem, with every call's method name recorded. */
function recordingFileSystem(calls: string[]): FileSystem {
  return new Proxy(nodeFileSystem, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        calls.push(String(property));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

async function setup(t: TestContext): Promise<{ manager: LockManager; clock: ManualClock; syncsDuring(work: () => Promise<unknown>): Promise<string[]> }> {
  const calls: string[] = [];
  const { manager, clock } = await managerOnFiles(t, recordingFileSystem(calls));
  return {
    manager,
    clock,
    async syncsDuring(work) {
      calls.length = 0;
      await work();
      return calls.filter((call) => SYNCS.test(call));
    },
  };
}

test("a release, a reclaim of an expired lease and a force-release pay no fsync", async (t) => {
  const { manager, clock, syncsDuring } = await setup(t);
  const first = await manager.acquire({ resource: "r", holder: "a", ttlMs: 10_000 });
  const grantSyncs = await syncsDuring(() => manager.acquire({ resource: "s", holder: "a", ttlMs: 10_000 }));
  assert.ok(grantSyncs.length > 0, "the recording sees a grant's syncs (else this test proves nothing)");

  assert.deepEqual(await syncsDuring(() => manager.release(first.leaseId)), [], "a release");

  await manager.acquire({ resource: "r", holder: "b", ttlMs: 1_000 });
  assert.deepEqual(await syncsDuring(() => clock.advance(1_001)), [], "reclaiming an expired lease");
  assert.equal((await manager.list("r")).length, 0, "the expired lease was reclaimed");

  assert.deepEqual(await syncsDuring(() => manager.forceRelease("s", "operator", "test")), [], "a force-release");
});

test("a hand-over pays for the grant it makes and nothing for its release half", async (t) => {
  const { manager, syncsDuring } = await setup(t);
  const first = await manager.acquire({ resource: "r", holder: "a", ttlMs: 10_000 });
  await manager.release(first.leaseId);
  // A grant of the free resource once its counter exists: what a grant costs.
  let holder!: Awaited<ReturnType<LockManager["acquire"]>>;
  const grantSyncs = await syncsDuring(async () => (holder = await manager.acquire({ resource: "r", holder: "b", ttlMs: 10_000 })));
  const waiter = manager.acquire({ resource: "r", holder: "c", ttlMs: 10_000, waitMs: 60_000 });
  await settle();
  const handOverSyncs = await syncsDuring(async () => {
    await manager.release(holder.leaseId);
    await waiter;
  });
  assert.ok(grantSyncs.length > 0, "the next holder's grant is made durable");
  assert.deepEqual(handOverSyncs.sort(), grantSyncs.sort(), "a hand-over syncs what a grant does, and nothing for the release");
});
