// Durability order of the lease-file store, recorded by a file system that
// logs every call: no grant or renewal that writes is answered before the
// write is durable (temp file fsynced, then linked or renamed into place,
// then the lock dir fsynced; the fencing counter's rename fsynced before the
// lease file is written), and a release pays no fsync at all (losing a
// release in a power cut only keeps the lease held until it expires).
import { test } from "node:test";
import assert from "node:assert/strict";
import { basename } from "node:path";
import { hashLeaseId } from "../../src/core/lease-id.ts";
import { nodeFileSystem, type FileSystem } from "../../src/store/file-system.ts";
import { LeaseFileStore } from "../../src/store/lease-file-store.ts";
import { ManualClock } from "../helpers/manual-clock.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

/** Every call as "method name" (the last path component), plus "ANSWER" where the test marks it. */
class RecordingFileSystem implements FileSystem {
  readonly calls: string[] = [];
  constructor(private readonly dir: string) {}
  private note(method: string, path: string): void {
    this.calls.push(`${method} ${path === this.dir ? "<dir>" : basename(path).replace(/\.[0-9]+\.[0-9a-f]+\.tmp$/, ".tmp")}`);
  }
  readFileWithMtime(path: string) {
    this.note("read", path);
    return nodeFileSystem.readFileWithMtime(path);
  }
  writeNewFileSynced(path: string, data: string) {
    this.note("write+fsync", path);
    return nodeFileSystem.writeNewFileSynced(path, data);
  }
  overwriteSynced(path: string, identity: string, data: string, writing: () => void) {
    this.note("overwrite+fdatasync", path);
    return nodeFileSystem.overwriteSynced(path, identity, data, writing);
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
  syncDirectory(path: string) {
    this.note("fsync", path);
    return nodeFileSystem.syncDirectory(path);
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

    // Its next renewal past the horizon rewrites its own file in place: written and
    // fdatasynced before the answer, with no guard, temp file or directory fsync.
    clock.set(clock.now() + 4_000);
    const inPlace = await recorded(fs, () => restarted.renew("r", hashLeaseId("c")));
    assert.deepEqual(inPlace, ["overwrite+fdatasync r.lock", "ANSWER"]);
  } finally {
    await temp.remove();
  }
});
