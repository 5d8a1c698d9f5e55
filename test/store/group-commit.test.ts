import { test } from "node:test";
import assert from "node:assert/strict";
import { nodeFileSystem } from "../../src/store/file-system.ts";
import { GroupCommit } from "../../src/store/group-commit.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

/** A directory fsync the test finishes by hand, recording when each started. */
class HeldSyncs {
  readonly started: Array<{ finish(err?: Error): void }> = [];
  readonly sync = (_path: string): Promise<void> =>
    new Promise((resolve, reject) => {
      this.started.push({ finish: (err) => (err ? reject(err) : resolve()) });
    });
}

test("concurrent directory fsyncs are batched: each caller waits for one that started after it asked", async () => {
  const temp = await makeTempDir();
  try {
    let fsyncs = 0;
    const group = new GroupCommit((dir) => {
      fsyncs++;
      return nodeFileSystem.syncDirectory(dir);
    });
    const first = group.sync(temp.path);
    const batch = Array.from({ length: 9 }, () => group.sync(temp.path));
    await Promise.all([first, ...batch]);
    assert.equal(fsyncs, 2, "one fsync for the first caller, one shared by the nine who came while it ran");
    await group.sync(temp.path);
    assert.equal(fsyncs, 3, "a caller after the batch gets its own");
  } finally {
    await temp.remove();
  }
});

test("nobody is answered by an fsync that started before they asked; a failed fsync fails everyone it was to serve", async () => {
  const held = new HeldSyncs();
  const group = new GroupCommit(held.sync);
  const settled: string[] = [];
  const note = (name: string, p: Promise<void>) =>
    p.then(
      () => settled.push(`${name} ok`),
      (err: Error) => settled.push(`${name} ${err.message}`),
    );
  const a = note("a", group.sync("/d"));
  const b = note("b", group.sync("/d")); // asked while a's fsync runs: must wait for the next
  const c = note("c", group.sync("/d"));
  const other = note("other", group.sync("/e")); // another directory has its own fsyncs
  assert.equal(held.started.length, 2);
  held.started[0]!.finish();
  await a;
  assert.deepEqual(settled, ["a ok"], "b and c asked after a's fsync began: it does not cover them");
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(held.started.length, 3, "the next fsync starts when the running one ends");
  const d = note("d", group.sync("/d")); // asked while the shared one runs: the one after
  held.started[2]!.finish(new Error("EIO"));
  await Promise.all([b, c]);
  assert.deepEqual(settled.slice(1).sort(), ["b EIO", "c EIO"]);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(held.started.length, 4);
  held.started[3]!.finish();
  held.started[1]!.finish();
  await Promise.all([d, other]);
  assert.deepEqual(settled.slice(3).sort(), ["d ok", "other ok"]);
});
