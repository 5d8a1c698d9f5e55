// Durability order of the lease-file store, recorded by a file system that
// logs every call: no grant or renewal that writes is answered before the
// write is durable (temp file fsynced, then linked or renamed into place,
// then the lock dir fsynced; the fencing counter's rename fsynced before the
// lease file is committed), concurrent grants share the lock dir's fsyncs
// (group commit), and a release pays no fsync at all (losing a release in a
// power cut only keeps the lease held until it expires).
import { test } from "node:test";
import assert from "node:assert/strict";
import { basename } from "node:path";
import { hashLeaseId } from "../../src/core/lease-id.ts";
import { nodeFileSystem, type FileSystem } from "../../src/store/file-system.ts";
import { LeaseFileStore } from "../../src/store/lease-file-store.ts";
import { ManualClock } from "../helpers/manual-clock.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { waitFor } from "../helpers/wait.ts";

/**
 * Every call as "method name" (the last path component), plus "ANSWER" where
 * the test marks it. With `completions`, also "fsynced <name>" when an fsync
 * has finished; `holdNextDirectorySync` keeps the next one from
 * starting until the test lets it.
 */
class RecordingFileSystem implements FileSystem {
  readonly calls: string[] = [];
  private held: { reached: () => void; released: Promise<void> } | undefined;
  constructor(
    private readonly dir: string,
    private readonly completions = false,
  ) {}
  private note(method: string, path: string): void {
    this.calls.push(`${method} ${path === this.dir ? "<dir>" : basename(path).replace(/\.[0-9]+\.[0-9a-f]+\.tmp$/, ".tmp")}`);
  }
  /** Holds the next fsync of the lock dir: `reached` once it is asked for; it runs after `release()`. */
  holdNextDirectorySync(): { reached: Promise<void>; release(): void } {
    let reached!: () => void;
    let release!: () => void;
    const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
    this.held = { reached, released: new Promise<void>((resolve) => (release = resolve)) };
    return { reached: reachedPromise, release };
  }
  readFileWithMtime(path: string) {
    this.note("read", path);
    return nodeFileSystem.readFileWithMtime(path);
  }
  writeNewFileSynced(path: string, data: string) {
    this.note("write+fsync", path);
    return nodeFileSystem.writeNewFileSynced(path, data);
  }
  rename(from: string, to: string) {
    this.note("rename", to);
    return nodeFileSystem.rename(from, to);
  }
  link(from: string, to: string) {
    this.note("link", to);
    return nodeFileSystem.link(from, to);
  }
  unlink(path: string) {
    this.note("unlink", path);
    return nodeFileSystem.unlink(path);
  }
  async syncDirectory(path: string) {
    this.note("fsync", path);
    const held = path === this.dir ? this.held : undefined;
    if (held) {
      this.held = undefined;
      held.reached();
      await held.released;
    }
    await nodeFileSystem.syncDirectory(path);
    if (this.completions) this.note("fsynced", path);
  }
  mkdir(path: string) {
    return nodeFileSystem.mkdir(path);
  }
  makeDirectory(path: string) {
    this.note("mkdir", path);
    return nodeFileSystem.makeDirectory(path);
  }
  removeDirectory(path: string) {
    this.note("rmdir", path);
    return nodeFileSystem.removeDirectory(path);
  }
  readdir(path: string) {
    this.note("readdir", path);
    return nodeFileSystem.readdir(path);
  }
  inspect(path: string) {
    this.note("lstat", path);
    return nodeFileSystem.inspect(path);
  }
  identity(path: string) {
    this.note("stat", path);
    return nodeFileSystem.identity(path);
  }
  watch(path: string, onEvent: (filename: string | null) => void, onError: (err: Error) => void) {
    return nodeFileSystem.watch(path, onEvent, onError);
  }
}

async function recorded<T>(fs: RecordingFileSystem, work: () => Promise<T>): Promise<string[]> {
  fs.calls.length = 0;
  await work();
  fs.calls.push("ANSWER");
  return [...fs.calls];
}

test("a first grant: counter made, lease fsynced, linked, lock dir fsynced (both entries durable), then the answer", async () => {
  const temp = await makeTempDir();
  try {
    const fs = new RecordingFileSystem(temp.path);
    const store = new LeaseFileStore({ dir: temp.path, fs, clock: new ManualClock() });
    const calls = await recorded(fs, () => store.acquire("r", { holder: "h", ttlMs: 10_000, metadata: {}, leaseIdHash: hashLeaseId("a") }));
    assert.deepEqual(calls, [
      "mkdir r.lock.guard",
      "read r.lock",
      "readdir r.lock.fence",
      "read r.lock.fence.v1", // no counter: none issued, unless a conversion moved a version 1 one aside
      "mkdir .r.tmp", // the counter's first directory, holding the token's file
      "write+fsync 1",
      "fsync .r.tmp",
      "rename r.lock.fence", // made durable by the lock dir's fsync below, before the answer
      "write+fsync .r.tmp", // the lease, under a temp name
      "stat r.lock", // the commit rule: still absent
      "lstat 1", // still the last token issued
      "link r.lock",
      "unlink .r.tmp",
      "fsync <dir>", // durable before the answer
      "rmdir r.lock.guard",
      "ANSWER",
    ]);
  } finally {
    await temp.remove();
  }
});

test("later grants advance the counter by one fsynced rename; a hand-over and a renewal that writes are durable before the answer; a release pays no fsync", async () => {
  const temp = await makeTempDir();
  try {
    const fs = new RecordingFileSystem(temp.path);
    const clock = new ManualClock();
    const store = new LeaseFileStore({ dir: temp.path, fs, clock });
    const grant = (id: string) => ({ holder: id, ttlMs: 10_000, metadata: {}, leaseIdHash: hashLeaseId(id) });
    await store.acquire("r", grant("a"));

    const release = await recorded(fs, () => store.release("r", hashLeaseId("a")));
    assert.ok(!release.some((call) => call.startsWith("fsync") || call.startsWith("write")), `a release wrote or synced: ${release.join(", ")}`);
    assert.ok(release.includes("unlink r.lock"));

    const second = await recorded(fs, () => store.acquire("r", grant("b")));
    const renameCounter = second.indexOf("rename 2"); // r.lock.fence/1 → r.lock.fence/2
    assert.ok(renameCounter >= 0, `the counter moves by rename: ${second.join(", ")}`);
    assert.equal(second[renameCounter + 1], "fsync r.lock.fence", "the counter's rename is fsynced at once");
    assert.ok(second.indexOf("link r.lock") > renameCounter, "the token is issued before the lease file is written");
    assert.equal(second.at(-3), "fsync <dir>", "the lock dir is fsynced before the answer");

    const handOver = await recorded(fs, () => store.handOver("r", hashLeaseId("b"), grant("c")));
    assert.ok(handOver.includes("rename r.lock"), "the next holder's lease replaces the releaser's in one rename");
    assert.ok(handOver.indexOf("fsync <dir>") > handOver.indexOf("rename r.lock"));
    assert.equal(handOver.at(-3), "fsync <dir>");

    // A restarted store (no promise) renews by rewriting the file: durable before the answer.
    const restarted = new LeaseFileStore({ dir: temp.path, fs, clock });
    const renewal = await recorded(fs, () => restarted.renew("r", hashLeaseId("c")));
    assert.ok(renewal.indexOf("rename r.lock") < renewal.lastIndexOf("fsync <dir>"));
    assert.equal(renewal.at(-3), "fsync <dir>");
  } finally {
    await temp.remove();
  }
});

test("concurrent grants share one fsync of the lock dir (group commit), and none is answered before an fsync that started after its link", async () => {
  const temp = await makeTempDir();
  try {
    const fs = new RecordingFileSystem(temp.path, true);
    const store = new LeaseFileStore({ dir: temp.path, fs, clock: new ManualClock() });
    const grant = (id: string) => ({ holder: id, ttlMs: 10_000, metadata: {}, leaseIdHash: hashLeaseId(id) });
    // Counters exist, so each grant below is: rename the counter, write the lease, link it, fsync the dir.
    for (const r of ["a", "b", "c", "d"]) {
      await store.acquire(r, grant(r));
      await store.release(r, hashLeaseId(r));
    }
    fs.calls.length = 0;
    const answered = (r: string) => (outcome: unknown) => {
      assert.ok(outcome && typeof outcome === "object" && "granted" in outcome, `${r} was not granted`);
      fs.calls.push(`ANSWER ${r}`);
    };

    const held = fs.holdNextDirectorySync();
    const first = store.acquire("a", grant("a2")).then(answered("a"));
    await held.reached; // a is linked, and its fsync of the lock dir has not started
    const others = ["b", "c", "d"].map((r) => store.acquire(r, grant(`${r}2`)).then(answered(r)));
    await waitFor(() => ["b", "c", "d"].every((r) => fs.calls.includes(`link ${r}.lock`)), "b, c and d to link their lease files");
    await new Promise((resolve) => setTimeout(resolve, 20)); // time for them to ask for an fsync
    assert.equal(fs.calls.filter((call) => call === "fsync <dir>").length, 1, `nobody started a second fsync of the dir while one is held: ${fs.calls.join(", ")}`);
    assert.ok(!fs.calls.some((call) => call.startsWith("ANSWER")), `nothing answered before its fsync: ${fs.calls.join(", ")}`);
    held.release();
    await Promise.all([first, ...others]);

    const calls = fs.calls;
    const dirSyncs = calls.flatMap((call, i) => (call === "fsync <dir>" ? [i] : []));
    assert.equal(dirSyncs.length, 2, `a's own fsync, then one shared by b, c and d: ${calls.join(", ")}`);
    const [own, shared] = dirSyncs as [number, number];
    const finished = calls.flatMap((call, i) => (call === "fsynced <dir>" ? [i] : []));
    assert.equal(finished.length, 2);
    assert.ok(calls.indexOf("ANSWER a") > finished[0]!, "a is answered after its fsync finished");
    for (const r of ["a", "b", "c", "d"]) {
      // The counter's fsync runs beside the lease's temp file, and ends before the commit.
      const counterSynced = calls.indexOf(`fsynced ${r}.lock.fence`);
      assert.ok(counterSynced >= 0 && counterSynced < calls.indexOf(`link ${r}.lock`), `${r}'s counter is durable before its lease is linked`);
    }
    for (const r of ["b", "c", "d"]) {
      assert.ok(calls.indexOf(`link ${r}.lock`) > own, `${r} linked after a's fsync started, so that fsync does not cover it`);
      assert.ok(calls.indexOf(`link ${r}.lock`) < shared, `${r} linked before the shared fsync started`);
      assert.ok(calls.indexOf(`ANSWER ${r}`) > finished[1]!, `${r} answered only after the shared fsync finished: ${calls.join(", ")}`);
    }
  } finally {
    await temp.remove();
  }
});
