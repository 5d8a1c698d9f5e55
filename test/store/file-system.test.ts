import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { identityOf, nodeFileSystem, SharedDirectorySync, syncDirectoryOnPool, threadPoolFileSystem } from "../../src/store/file-system.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

test("concurrent directory fsyncs on the thread pool are batched: each caller waits for one that started after it asked", async () => {
  const temp = await makeTempDir();
  const started: number[] = [];
  const shared = new SharedDirectorySync(async (path) => {
    started.push(started.length);
    await syncDirectoryOnPool(path);
  });
  try {
    const first = shared.sync(temp.path);
    const batch = Array.from({ length: 9 }, () => shared.sync(temp.path));
    await Promise.all([first, ...batch]);
    assert.equal(started.length, 2, "one fsync for the first caller, one shared by the nine who came while it ran");
    await shared.sync(temp.path);
    assert.equal(started.length, 3, "a caller after the batch gets its own");
    await threadPoolFileSystem.syncDirectory(temp.path);
  } finally {
    await temp.remove();
  }
});

test("a file's identity: every way of reading it agrees, and an mtime one microsecond later is another version", async () => {
  const temp = await makeTempDir();
  try {
    const path = join(temp.path, "r.lock");
    const written = await nodeFileSystem.writeNewFileSynced(path, "x".repeat(300));
    assert.equal(await nodeFileSystem.identity(path), written);
    assert.equal(await threadPoolFileSystem.identity(path), written);
    assert.equal((await nodeFileSystem.readFileWithMtime(path)).identity, written);
    assert.equal((await threadPoolFileSystem.readFileWithMtime(path)).identity, written);
    // The mtime is kept below the millisecond: two writes a microsecond apart stay two versions.
    const seconds = Math.floor(Date.now() / 1000);
    fs.utimesSync(path, seconds, seconds + 0.000_001);
    const first = await nodeFileSystem.identity(path);
    fs.utimesSync(path, seconds, seconds + 0.000_002);
    const second = await nodeFileSystem.identity(path);
    assert.notEqual(first, second);
    assert.equal(await threadPoolFileSystem.identity(path), second);
  } finally {
    await temp.remove();
  }
});

test("an inode number past 2^53 takes its identity from the exact (bigint) stat, never from a rounded number", () => {
  let exactCalls = 0;
  const exact = () => {
    exactCalls++;
    return { ino: 2n ** 53n + 1n, mtimeNs: 1_765_000_000_123_456_789n, size: 300n };
  };
  // 2^53 + 1 has no double: as a number it reads as 2^53, which another file could have.
  assert.equal(identityOf({ ino: 2 ** 53 + 1, mtimeMs: 1, size: 300 }, exact), "9007199254740993:1765000000123456789n:300");
  assert.equal(exactCalls, 1);
  assert.equal(identityOf({ ino: 42, mtimeMs: 1_765_000_000_123.4568, size: 300 }, exact), "42:1765000000123.4568:300");
  assert.equal(exactCalls, 1, "a safe inode number needs no second stat");
});
