// The lease-file store's adaptive file system: synchronous calls while the
// caller's operation is alone, thread-pool calls as soon as another is in
// flight, and fsyncs (disk waits) always on the pool.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { join } from "node:path";
import { adaptiveFileSystem } from "../../src/store/file-system.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

const require = createRequire(import.meta.url);
const cjsFs = require("node:fs") as typeof import("node:fs");

/** Counts calls of fs.renameSync, fs.fsyncSync and fs.promises.rename while `body` runs. */
async function counting(body: () => Promise<void>): Promise<{ renameSync: number; fsyncSync: number; promisesRename: number }> {
  const counts = { renameSync: 0, fsyncSync: 0, promisesRename: 0 };
  const real = { renameSync: cjsFs.renameSync, fsyncSync: cjsFs.fsyncSync, promisesRename: cjsFs.promises.rename };
  cjsFs.renameSync = (...args: Parameters<typeof real.renameSync>) => {
    counts.renameSync++;
    return real.renameSync(...args);
  };
  cjsFs.fsyncSync = (...args: Parameters<typeof real.fsyncSync>) => {
    counts.fsyncSync++;
    return real.fsyncSync(...args);
  };
  cjsFs.promises.rename = (...args: Parameters<typeof real.promisesRename>) => {
    counts.promisesRename++;
    return real.promisesRename(...args);
  };
  syncBuiltinESMExports(); // so that `import * as fs` in the module under test sees the spies
  try {
    await body();
  } finally {
    Object.assign(cjsFs, { renameSync: real.renameSync, fsyncSync: real.fsyncSync });
    cjsFs.promises.rename = real.promisesRename;
    syncBuiltinESMExports();
  }
  return counts;
}

test("adaptive file system: synchronous calls while alone, the thread pool otherwise, fsync always on the pool", async () => {
  const temp = await makeTempDir();
  try {
    let alone = true;
    const fs = adaptiveFileSystem(() => alone);
    const a = join(temp.path, "a");
    const b = join(temp.path, "b");

    const lone = await counting(async () => {
      await fs.writeNewFileSynced(a, "x");
      await fs.rename(a, b);
      await fs.syncDirectory(temp.path);
    });
    assert.deepEqual(lone, { renameSync: 1, fsyncSync: 0, promisesRename: 0 }, "alone: a synchronous rename; the fsyncs went to the pool");
    assert.equal(readFileSync(b, "utf8"), "x");

    alone = false;
    const shared = await counting(async () => {
      await fs.rename(b, a);
      await fs.syncDirectory(temp.path);
    });
    assert.deepEqual(shared, { renameSync: 0, fsyncSync: 0, promisesRename: 1 }, "not alone: the rename went to the pool");
    assert.ok(existsSync(a) && !existsSync(b));
  } finally {
    await temp.remove();
  }
});
