// The lease-file store with its fsyncs on the thread pool (--fsync pool, and
// --fsync auto whenever writes overlap or the disk is slow): concurrent
// grants share the lock dir's fsync (group commit), none is answered before
// an fsync of the dir that started after its link, and a grant waiting for
// the disk holds up no other resource.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { basename, resolve } from "node:path";
import { hashLeaseId } from "../../src/core/lease-id.ts";
import type { LeaseGrant } from "../../src/core/lease.ts";
import { fileSystemPlacingFsyncs, SharedDirectorySync, syncDirectoryOnPool, threadPoolFileSystem, type FileSystem } from "../../src/store/file-system.ts";
import { FAST_FSYNC_MS, FsyncPlacement, SLOW_FSYNC_MS } from "../../src/store/fsync-placement.ts";
import { LeaseFileStore } from "../../src/store/lease-file-store.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

const grantFor = (name: string): LeaseGrant => ({ holder: name, ttlMs: 30_000, metadata: {}, leaseIdHash: hashLeaseId(`lease-of-${name}`) });

async function granted(store: LeaseFileStore, resource: string): Promise<void> {
  const outcome = await store.acquire(resource, grantFor(resource));
  assert.ok("granted" in outcome, `${resource} was not granted: ${JSON.stringify(outcome)}`);
}

test("grants on the thread pool share the lock dir's fsync, and each is answered only after one that started after its commit", async () => {
  const temp = await makeTempDir();
  const lockDir = resolve(temp.path);
  const RESOURCES = 16;
  const events: string[] = [];
  let requested = 0;
  let started = 0;
  let allRequested!: () => void;
  const everyoneAsked = new Promise<void>((done) => (allRequested = done));
  // The first fsync of the lock dir waits until every grant has asked for one,
  // so that the others must share what follows it.
  const directories = new SharedDirectorySync(async (path) => {
    if (resolve(path) !== lockDir) return syncDirectoryOnPool(path);
    const n = started++;
    if (n === 0) await everyoneAsked;
    events.push(`fsync-start ${n}`);
    await syncDirectoryOnPool(path);
    events.push(`fsync-end ${n}`);
  });
  const placing = fileSystemPlacingFsyncs(new FsyncPlacement("pool"), { directories });
  const recording: FileSystem = {
    ...placing,
    link: async (from, to) => {
      await placing.link(from, to);
      events.push(`commit ${basename(to)}`);
    },
    rename: async (from, to) => {
      await placing.rename(from, to);
      if (to.endsWith(".lock")) events.push(`commit ${basename(to)}`);
    },
    syncDirectory: (path) => {
      if (resolve(path) === lockDir && ++requested === RESOURCES) allRequested();
      return placing.syncDirectory(path);
    },
  };
  const store = new LeaseFileStore({ dir: temp.path, fs: recording });
  try {
    await store.open();
    await Promise.all(
      Array.from({ length: RESOURCES }, async (_, i) => {
        await granted(store, `r${i}`);
        events.push(`answer r${i}.lock`);
      }),
    );
    for (let i = 0; i < RESOURCES; i++) {
      const commit = events.indexOf(`commit r${i}.lock`);
      const answer = events.indexOf(`answer r${i}.lock`);
      assert.ok(commit >= 0 && answer > commit, `r${i}: committed, then answered`);
      const covered = events.some((event, at) => {
        if (at <= commit || !event.startsWith("fsync-start ")) return false;
        const end = events.indexOf(`fsync-end ${event.slice("fsync-start ".length)}`);
        return end > at && end < answer;
      });
      assert.ok(covered, `r${i} was answered without an fsync of the lock dir that started after its commit:\n${events.join("\n")}`);
    }
    // One each (a new fencing counter's rename rides on the lease file's fsync);
    // the fifteen that asked while the first ran shared the next.
    assert.equal(requested, RESOURCES);
    assert.equal(started, 2, `${requested} lock-dir fsyncs asked for, ${started} made`);
  } finally {
    await store.close();
    await temp.remove();
  }
});

test("on the thread pool, a grant waiting for the disk holds up no other resource's grant, release or renewal", async () => {
  const temp = await makeTempDir();
  let reachedDisk!: () => void;
  const slowAtDisk = new Promise<void>((done) => (reachedDisk = done));
  let openDisk!: () => void;
  const diskOpen = new Promise<void>((done) => (openDisk = done));
  const placing = fileSystemPlacingFsyncs(new FsyncPlacement("pool"), {
    fsyncFileOnPool: async (fd, path) => {
      // Every file of "slow" (its counter's, its lease's temp file) starts with ".slow.".
      if (path.includes("/.slow.")) {
        reachedDisk();
        await diskOpen;
      }
      await new Promise<void>((done, fail) => fs.fsync(fd, (err) => (err ? fail(err) : done())));
    },
  });
  const store = new LeaseFileStore({ dir: temp.path, fs: placing });
  try {
    await store.open();
    await granted(store, "held");
    let slowDone = false;
    const slow = granted(store, "slow").then(() => (slowDone = true));
    await slowAtDisk;
    await granted(store, "fast");
    assert.equal(await store.release("fast", grantFor("fast").leaseIdHash), true);
    assert.ok(await store.renew("held", grantFor("held").leaseIdHash), "held's renewal");
    assert.equal(slowDone, false, "the slow grant was still waiting for its fsync");
    openDisk();
    await slow;
  } finally {
    openDisk();
    await store.close();
    await temp.remove();
  }
});

test("--fsync loop keeps every fsync on the event loop, pool every one on the thread pool; the lease files are the same", async () => {
  for (const mode of ["loop", "pool"] as const) {
    const temp = await makeTempDir();
    const store = new LeaseFileStore({ dir: temp.path, fsync: mode });
    try {
      await store.open();
      await granted(store, "a");
      await granted(store, "b");
      const other = mode === "loop" ? "pool" : "loop";
      assert.ok(store.fsyncs!.counts[mode] >= 6, `${mode}: ${JSON.stringify(store.fsyncs!.counts)}`);
      assert.equal(store.fsyncs!.counts[other], 0, `${mode}: ${JSON.stringify(store.fsyncs!.counts)}`);
      assert.ok(store.fsyncs!.averageMs! > 0);
      assert.ok((await store.read("a")).kind === "held");
    } finally {
      await store.close();
      await temp.remove();
    }
  }
});

const nextTurn = () => new Promise<void>((done) => setImmediate(done));

test("auto: a write alone fsyncs on the event loop, writes side by side (in flight, or begun in one turn) on the pool", async () => {
  const placement = new FsyncPlacement("auto");
  await nextTurn();
  const first = placement.beginWrite();
  assert.equal(placement.onPool, false, "alone");
  const second = placement.beginWrite();
  assert.equal(placement.onPool, true, "two in flight");
  first();
  assert.equal(placement.onPool, true, "one ended, but the other began in this turn");
  await nextTurn();
  assert.equal(placement.onPool, false, "the other alone in a later turn");
  second();
  const third = placement.beginWrite();
  assert.equal(placement.onPool, false, "alone again");
  third();
  const fourth = placement.beginWrite();
  assert.equal(placement.onPool, true, "the second write begun in this turn, though the first has ended");
  fourth();
  await nextTurn();
  const ends = [placement.beginWrite(), placement.beginWrite(), placement.beginWrite()];
  await nextTurn();
  ends[0]!();
  ends[0]!();
  assert.equal(placement.onPool, true, "two still in flight: a second call of one end function counts once");
  ends[1]!();
  assert.equal(placement.onPool, false);
  ends[2]!();
  assert.equal(new FsyncPlacement("loop").onPool, false);
  assert.equal(new FsyncPlacement("pool").onPool, true);
});

test("auto: lone fsyncs averaging SLOW_FSYNC_MS move every fsync to the pool, and under FAST_FSYNC_MS back; fsyncs side by side do not count", async () => {
  const changes: Array<[boolean, number]> = [];
  const placement = new FsyncPlacement("auto", (slow, ms) => changes.push([slow, ms]));
  for (let i = 0; i < 20; i++) placement.took(true, 50, false);
  assert.equal(placement.onPool, false, "slow fsyncs beside others (queued) do not make the disk slow");
  assert.deepEqual(changes, []);
  for (let i = 0; i < 4; i++) placement.took(false, SLOW_FSYNC_MS + 1, true);
  assert.equal(placement.onPool, false, "four lone fsyncs are too few to judge the disk by");
  placement.took(false, SLOW_FSYNC_MS + 1, true);
  assert.deepEqual(changes, [[true, SLOW_FSYNC_MS + 1]]);
  assert.equal(placement.onPool, true, "a slow disk: even a write alone fsyncs on the pool");
  let fast = 0;
  while (placement.onPool) {
    placement.took(true, FAST_FSYNC_MS / 10, true);
    assert.ok(++fast < 100, "never back on the loop");
  }
  assert.ok(fast > 1, "one fast fsync is not enough to go back");
  assert.equal(changes.length, 2);
  assert.equal(changes[1]![0], false);
  assert.ok(changes[1]![1] < FAST_FSYNC_MS);
  assert.deepEqual(placement.counts, { loop: 5, pool: 20 + fast });
  // A new dir's first fsync alone may be slow: it weighs as one of the first five, not as ten.
  const fresh = new FsyncPlacement("auto");
  fresh.took(false, 3, true);
  for (let i = 0; i < 4; i++) fresh.took(false, 0.3, true);
  assert.equal(fresh.onPool, false, `one slow first fsync among five (average ${fresh.averageMs} ms)`);
  // Forced modes follow the disk's average too (for metrics) but never move.
  const loop = new FsyncPlacement("loop", () => assert.fail("loop moved"));
  loop.took(false, 100, true);
  assert.equal(loop.onPool, false);
  assert.equal(loop.averageMs, 100);
});

test("auto on a slow disk: every file call that changes the file system goes to the thread pool (reads stay), and back on the event loop once the disk is fast", async () => {
  const temp = await makeTempDir();
  const pooled: string[] = [];
  const countingPool = Object.fromEntries(
    Object.entries(threadPoolFileSystem).map(([name, call]) => [name, (...args: unknown[]) => (pooled.push(name), (call as (...a: unknown[]) => unknown)(...args))]),
  ) as unknown as FileSystem;
  const placement = new FsyncPlacement("auto");
  const store = new LeaseFileStore({ dir: temp.path, fs: fileSystemPlacingFsyncs(placement, { pool: countingPool }) });
  try {
    await store.open();
    await granted(store, "before");
    assert.equal(pooled.join(", "), "", `a fast disk: nothing on the pool (${placement.averageMs} ms)`);

    // Lone fsyncs of 10 ms, until the average (which has the first grant's fast ones) says slow.
    for (let i = 0; !placement.everyCallOnPool; i++) {
      assert.ok(i < 30, "never slow");
      placement.took(false, SLOW_FSYNC_MS * 5, true);
    }
    await granted(store, "slow");
    assert.equal(await store.release("slow", grantFor("slow").leaseIdHash), true);
    for (const call of ["makeDirectory", "rename", "link", "unlink", "removeDirectory"]) {
      assert.ok(pooled.includes(call), `${call} was not on the pool: ${pooled.join(", ")}`);
    }
    for (const call of ["readFileWithMtime", "identity", "inspect"]) {
      assert.ok(!pooled.includes(call), `${call}, a read, went to the pool: ${pooled.join(", ")}`);
    }
    assert.ok(placement.counts.pool >= 3, "and the fsyncs");

    while (placement.everyCallOnPool) placement.took(true, 0, true);
    pooled.length = 0;
    await granted(store, "after");
    assert.equal(pooled.join(", "), "", "fast again: back on the event loop");
    assert.equal((await store.read("slow")).kind, "free");
    assert.equal((await store.read("after")).kind, "held");
  } finally {
    await store.close();
    await temp.remove();
  }
});
