import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { threadPoolFileSystem } from "../../src/store/file-system.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

test("concurrent directory fsyncs on the thread pool are batched: each caller waits for one that started after it asked", async () => {
  const temp = await makeTempDir();
  const realOpen = fs.promises.open;
  const opened: number[] = [];
  fs.promises.open = (async (...args: Parameters<typeof realOpen>) => {
    if (args[0] === temp.path) opened.push(opened.length);
    return realOpen(...args);
  }) as typeof realOpen;
  try {
    const first = threadPoolFileSystem.syncDirectory(temp.path);
    const batch = Array.from({ length: 9 }, () => threadPoolFileSystem.syncDirectory(temp.path));
    await Promise.all([first, ...batch]);
    assert.equal(opened.length, 2, "one fsync for the first caller, one shared by the nine who came while it ran");
    await threadPoolFileSystem.syncDirectory(temp.path);
    assert.equal(opened.length, 3, "a caller after the batch gets its own");
  } finally {
    fs.promises.open = realOpen;
    await temp.remove();
  }
});
