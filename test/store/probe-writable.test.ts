// LeaseFileStore.probeWritable, which health consults: it must notice every
// way a write can fail, report it like any store error, and leave nothing in
// the lock dir.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { StoreFailureError, StoreUnavailableError } from "../../src/core/errors.ts";
import { LeaseFileStore } from "../../src/store/lease-file-store.ts";
import { FaultyFileSystem } from "../helpers/faulty-file-system.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

const PROBE_NAME = new RegExp(`^\\.\\.probe\\.${process.pid}\\.[0-9a-f]{12}\\.tmp$`);

test("probeWritable: creates and removes a temp file named like the protocol's; nothing is left", async () => {
  const temp = await makeTempDir();
  try {
    const fs = new FaultyFileSystem();
    const store = new LeaseFileStore({ dir: temp.path, fs });
    await store.open();
    const written: string[] = [];
    const real = fs.writeNewFileSynced.bind(fs);
    fs.writeNewFileSynced = (path: string, data: string) => {
      written.push(path);
      return real(path, data);
    };
    await store.probeWritable();
    await store.probeWritable();
    assert.equal(written.length, 2);
    for (const path of written) assert.match(path.slice(temp.path.length + 1), PROBE_NAME);
    assert.notEqual(written[0], written[1], "each probe has its own name");
    assert.deepEqual(await readdir(temp.path), []);
  } finally {
    await temp.remove();
  }
});

test("probeWritable: a lock dir that is a file, or missing, is StoreUnavailable with the errno", async () => {
  const temp = await makeTempDir();
  try {
    const lockDir = join(temp.path, "locks");
    const store = new LeaseFileStore({ dir: lockDir });
    await store.open();
    await store.probeWritable();

    await rename(lockDir, join(temp.path, "away"));
    await assert.rejects(store.probeWritable(), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError, String(err));
      assert.equal(err.errno, "ENOENT");
      return true;
    });
    // Not made again: a missing lock dir is worth reporting.
    assert.deepEqual(await readdir(temp.path), ["away"]);

    await writeFile(lockDir, "");
    await assert.rejects(store.probeWritable(), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError, String(err));
      assert.equal(err.errno, "ENOTDIR");
      assert.match(err.message, /probing that the lock dir is writable/);
      return true;
    });
  } finally {
    await temp.remove();
  }
});

test("probeWritable: a failed write (ENOSPC) or unlink (EXDEV) is reported; errnos map like other store errors", async () => {
  const temp = await makeTempDir();
  try {
    const fs = new FaultyFileSystem();
    const store = new LeaseFileStore({ dir: temp.path, fs });
    await store.open();
    fs.fail("writeNewFileSynced", "ENOSPC");
    await assert.rejects(store.probeWritable(), (err: unknown) => err instanceof StoreUnavailableError && err.errno === "ENOSPC");
    fs.heal();
    fs.fail("unlink", "EXDEV"); // an errno the store does not expect: a failure, not "unavailable"
    await assert.rejects(store.probeWritable(), (err: unknown) => err instanceof StoreFailureError && err.errno === "EXDEV");
    fs.heal();
    await store.probeWritable();
  } finally {
    await temp.remove();
  }
});
