import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, openSync, renameSync, writeFileSync, writeSync } from "node:fs";
import { link, mkdir, readdir, readFile, rename, rm, rmdir, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { StoreFailureError, StoreUnavailableError } from "../../src/core/errors.ts";
import type { LeaseGrant, LeaseRecord } from "../../src/core/lease.ts";
import { hashLeaseId } from "../../src/core/lease-id.ts";
import { LeaseFileStore } from "../../src/store/lease-file-store.ts";
import type { AcquireOutcome } from "../../src/core/lease-store.ts";
import { readFenceToken } from "../helpers/fence.ts";
import { FaultyFileSystem } from "../helpers/faulty-file-system.ts";
import { assertValidLeaseFile, assertValidLockDir } from "../helpers/lease-file-schema.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { ManualClock } from "../helpers/manual-clock.ts";
import { withTimeout } from "../helpers/wait.ts";

// ---------------------------------------------------------------------------
// Helpers

interface Fixture {
  dir: string;
  store: LeaseFileStore;
  /** The clock every store of the fixture reads. */
  clock: ManualClock;
  /** Sets the clock to `t` and returns `store` (the fixture's by default), to call it "at" that time. */
  at(t: number, store?: LeaseFileStore): LeaseFileStore;
  fs: FaultyFileSystem;
  warnings: string[];
  remove(): Promise<void>;
}

async function fixture(): Promise<Fixture> {
  const temp = await makeTempDir();
  const fs = new FaultyFileSystem();
  const warnings: string[] = [];
  const clock = new ManualClock();
  const store = new LeaseFileStore({ dir: temp.path, fs, clock, onWarning: (m) => warnings.push(m) });
  await store.open();
  const at = (t: number, which = store) => {
    clock.set(t);
    return which;
  };
  return { dir: temp.path, store, clock, at, fs, warnings, remove: temp.remove };
}

function grant(id = "lease-id-1", overrides: Partial<LeaseGrant> = {}): LeaseGrant {
  return { holder: "alice", ttlMs: 10_000, metadata: { purpose: "test" }, leaseIdHash: hashLeaseId(id), ...overrides };
}

function granted(outcome: AcquireOutcome): LeaseRecord {
  assert.ok("granted" in outcome, `expected a grant, got ${JSON.stringify(outcome)}`);
  return outcome.granted;
}

async function entries(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

async function assertNoTempFiles(dir: string): Promise<void> {
  const left = (await readdir(dir)).filter((name) => name.startsWith(".") || name.endsWith(".tmp"));
  assert.deepEqual(left, [], "no temp files may be left in the lock dir");
}


/** The fencing counter's value, checked to bound `atLeast` (every token issued so far). */
async function fenceBounding(dir: string, resource: string, atLeast: number): Promise<number> {
  const value = await readFenceToken(dir, resource);
  assert.ok(value >= atLeast, `the fence (${value}) must be >= every token issued (${atLeast})`);
  return value;
}

/** Someone else's guard of `resource`, fresh at `at` by the fixture's clock; returns its path. */
async function takeGuardAsAnother(dir: string, resource: string, at: number): Promise<string> {
  const guard = join(dir, `${resource}.lock.guard`);
  await mkdir(guard);
  await utimes(guard, new Date(at), new Date(at));
  return guard;
}

/**
 * "mine" granted r at `now`; its renewal at +4 s rewrites the file in place
 * and is held after the write and fdatasync, before its result is recorded
 * (`held.open()` lets it go on).
 */
async function renewalHeldAfterItsWrite(f: Fixture, now: number) {
  const path = join(f.dir, "r.lock");
  granted(await f.at(now).acquire("r", grant("mine")));
  const held = f.fs.gate("overwriteSynced", (p) => p === path, { after: true });
  const renewal = f.at(now + 4_000).renew("r", hashLeaseId("mine"));
  await withTimeout(held.reached, 5_000, "the rewrite in place");
  return { held, renewal };
}

/** Sets a path's mtime (and atime) `ageMs` into the past. */
async function backdate(path: string, ageMs: number): Promise<void> {
  const when = new Date(Date.now() - ageMs);
  await utimes(path, when, when);
}

function validDocument(resource: string, patch: Record<string, unknown> = {}): string {
  const now = Date.now();
  return JSON.stringify({
    version: 1,
    resource,
    holder: "other-process",
    acquired_at: new Date(now).toISOString(),
    ttl: 30,
    expires_at: new Date(now + 30_000).toISOString(),
    fencing_token: 41,
    pid: 999_999,
    hostname: "elsewhere",
    ...patch,
  });
}

function assertStoreError(
  err: unknown,
  kind: typeof StoreUnavailableError | typeof StoreFailureError,
  path: string,
  errno: string,
): true {
  assert.ok(err instanceof kind, `expected ${kind.name}, got ${String(err)}`);
  assert.ok(err.message.includes(path), `message should contain the path ${path}: ${err.message}`);
  assert.ok(err.message.includes(errno), `message should contain ${errno}: ${err.message}`);
  assert.equal(err.path, path);
  assert.equal(err.errno, errno);
  return true;
}

// ---------------------------------------------------------------------------
// Tests

test("open creates a nested lock dir and can be called twice", async () => {
  const temp = await makeTempDir();
  try {
    const dir = join(temp.path, "a", "b", "locks");
    const store = new LeaseFileStore({ dir });
    await store.open();
    await store.open();
    assert.ok((await stat(dir)).isDirectory());
    assert.equal(store.location, dir);
  } finally {
    await temp.remove();
  }
});

test("acquire writes a schema-valid lease file and the fence file, nothing else", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const lease = granted(await f.at(now).acquire("gateway", grant()));
    assert.equal(lease.fencingToken, 1);
    assert.equal(lease.expiresAt, now + 10_000);
    assert.equal(lease.pid, process.pid);
    assert.equal(await assertValidLockDir(f.dir), 1);
    assert.deepEqual(await entries(f.dir), ["gateway.lock", "gateway.lock.fence"]);
    const document = await assertValidLeaseFile(join(f.dir, "gateway.lock"));
    assert.equal(document.lease_id_sha256, hashLeaseId("lease-id-1"));
    assert.equal(document.holder, "alice");
    assert.equal(document.ttl, 10);
    assert.equal(document.renewed_at, document.acquired_at);
    assert.deepEqual(document.metadata, { purpose: "test" });
    await fenceBounding(f.dir, "gateway", lease.fencingToken);
    assert.deepEqual(await f.store.read("gateway"), { kind: "held", resource: "gateway", lease });
  } finally {
    await f.remove();
  }
});

test("a live lease blocks until exactly its expires_at, then the next token is granted", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const first = granted(await f.at(now).acquire("r", grant("one")));
    const blocked = await f.at(first.expiresAt - 1).acquire("r", grant("two", { holder: "bob" }));
    assert.ok("blocked" in blocked);
    assert.equal(blocked.blocked.kind, "held");
    assert.equal(blocked.blocked.kind === "held" && blocked.blocked.lease.holder, "alice");
    const second = granted(await f.at(first.expiresAt).acquire("r", grant("two", { holder: "bob" })));
    assert.equal(second.fencingToken, 2);
    assert.equal(second.holder, "bob");
    assert.equal(await assertValidLockDir(f.dir), 1);
    await assertNoTempFiles(f.dir);
  } finally {
    await f.remove();
  }
});

test("renew extends only the live lease of the given hash", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const lease = granted(await f.at(now).acquire("r", grant("mine")));
    const renewed = await f.at(now + 4_000).renew("r", hashLeaseId("mine"));
    assert.ok(renewed);
    assert.equal(renewed.expiresAt, now + 14_000);
    assert.equal(renewed.fencingToken, lease.fencingToken);
    assert.equal(renewed.acquiredAt, lease.acquiredAt);
    const document = await assertValidLeaseFile(join(f.dir, "r.lock"));
    assert.equal(document.expires_at, new Date(now + 15_000).toISOString(), "the file says the promise + 1 s");

    const before = await readFile(join(f.dir, "r.lock"));
    assert.equal(await f.at(now + 5_000).renew("r", hashLeaseId("not-mine")), undefined);
    assert.equal(await f.at(now + 14_000).renew("r", hashLeaseId("mine")), undefined, "expired at expires_at");
    assert.equal(await f.at(now).renew("free", hashLeaseId("mine")), undefined);
    assert.deepEqual(await readFile(join(f.dir, "r.lock")), before, "failed renewals write nothing");
    await assertNoTempFiles(f.dir);
  } finally {
    await f.remove();
  }
});

test("a grant's file says ttl + 1 s; renewals within that second move only the promise; a later one rewrites the file in place", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const path = join(f.dir, "r.lock");
    const lease = granted(await f.at(now).acquire("r", grant("mine")));
    assert.equal(lease.expiresAt, now + 10_000, "the holder is promised ttl");
    let document = await assertValidLeaseFile(path);
    assert.equal(document.version, 3);
    assert.equal(document.expires_at, new Date(now + 11_000).toISOString(), "the file says ttl + 1 s");
    const written = await readFile(path);
    const grantFile = await stat(path);
    // Within the headroom (and more than half of it left): nothing written, nothing due.
    assert.equal((await f.at(now + 300).renew("r", hashLeaseId("mine")))?.expiresAt, now + 10_300);
    await f.store.backgroundWritesIdle();
    assert.deepEqual(await readFile(path), written, "the renewal at +300 ms wrote nothing");
    // Past the horizon: the renewal rewrites the file itself, in place, before it answers.
    assert.equal((await f.at(now + 4_000).renew("r", hashLeaseId("mine")))?.expiresAt, now + 14_000);
    document = await assertValidLeaseFile(path);
    assert.equal(document.renewed_at, new Date(now + 4_000).toISOString());
    assert.equal(document.expires_at, new Date(now + 15_000).toISOString());
    assert.equal(document.fencing_token, lease.fencingToken);
    const renewedFile = await stat(path);
    assert.equal(renewedFile.ino, grantFile.ino, "the same file: written in place");
    assert.equal(renewedFile.size, grantFile.size, "the same length");
    const state = await f.store.read("r");
    assert.equal(state.kind === "held" && state.lease.expiresAt, now + 14_000, "reads report the promise");
    assert.deepEqual(await entries(f.dir), ["r.lock", "r.lock.fence"], "no guard or temp file left");
  } finally {
    await f.remove();
  }
});

test("a horizon falls due for a background rewrite once less than a quarter of its headroom is left; the rewrite keeps the promise", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const path = join(f.dir, "r.lock");
    granted(await f.at(now).acquire("r", grant("mine")));
    const written = await readFile(path);
    assert.ok(await f.at(now + 700).renew("r", hashLeaseId("mine")));
    await f.store.backgroundWritesIdle();
    assert.deepEqual(await readFile(path), written, "at +700 ms, 300 ms of headroom left: no rewrite");
    // 200 ms of headroom left: the store rewrites the file in the background.
    assert.equal((await f.at(now + 800).renew("r", hashLeaseId("mine")))?.expiresAt, now + 10_800);
    await f.store.backgroundWritesIdle();
    const document = await assertValidLeaseFile(path);
    assert.equal(document.renewed_at, new Date(now + 800).toISOString());
    assert.equal(document.expires_at, new Date(now + 11_800).toISOString());
    const state = await f.store.read("r");
    assert.equal(state.kind === "held" && state.lease.expiresAt, now + 10_800, "the holder's promise is unchanged");
    // Renewals stay on the fast path against the new file.
    const rewritten = await readFile(path);
    assert.equal((await f.at(now + 1_200).renew("r", hashLeaseId("mine")))?.expiresAt, now + 11_200);
    await f.store.backgroundWritesIdle();
    assert.deepEqual(await readFile(path), rewritten);
    await assertNoTempFiles(f.dir);
  } finally {
    await f.remove();
  }
});

test("a renewal in place takes no guard: it goes through while another participant holds it", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    granted(await f.at(now).acquire("r", grant("mine")));
    // A live guard of someone else's (fresh by the store's clock).
    const guard = await takeGuardAsAnother(f.dir, "r", now + 4_000);
    const renewed = await withTimeout(f.at(now + 4_000).renew("r", hashLeaseId("mine")), 5_000, "a renewal beside a busy guard");
    assert.equal(renewed?.expiresAt, now + 14_000);
    assert.equal((await assertValidLeaseFile(join(f.dir, "r.lock"))).renewed_at, new Date(now + 4_000).toISOString());
    assert.deepEqual(await entries(f.dir), ["r.lock", "r.lock.fence", "r.lock.guard"], "the other's guard untouched, no temp file");
  } finally {
    await f.remove();
  }
});

test("a renewal or read while a rewrite in place is between its write and its answer keeps the promise, without the guard", async () => {
  const f = await fixture();
  let held: { reached: Promise<void>; open(): void } | undefined;
  try {
    const now = Date.now();
    const path = join(f.dir, "r.lock");
    let first: Promise<LeaseRecord | undefined>;
    ({ held, renewal: first } = await renewalHeldAfterItsWrite(f, now));
    const rewritten = await readFile(path);
    assert.equal((await assertValidLeaseFile(path)).renewed_at, new Date(now + 4_000).toISOString(), "the write has happened");
    // Someone else's fresh guard: a renewal that took the guarded path would wait for it.
    const guard = await takeGuardAsAnother(f.dir, "r", now + 4_000);
    const state = await f.store.read("r");
    assert.equal(state.kind === "held" && state.lease.expiresAt, now + 10_000, "a read keeps the promise, not the new file's horizon");
    // A second renewal waits for the rewrite in flight, then needs no write of its own.
    const second = f.at(now + 4_000).renew("r", hashLeaseId("mine"));
    held.open();
    assert.equal((await withTimeout(first, 5_000, "the first renewal"))?.expiresAt, now + 14_000);
    assert.equal((await withTimeout(second, 5_000, "the second renewal"))?.expiresAt, now + 14_000);
    assert.deepEqual(await readFile(path), rewritten, "one write for both");
    await rmdir(guard);
    // Recorded: later renewals stay on the fast path against the new file.
    assert.equal((await f.at(now + 4_500).renew("r", hashLeaseId("mine")))?.expiresAt, now + 14_500);
    assert.deepEqual(await readFile(path), rewritten);
    assert.deepEqual(await entries(f.dir), ["r.lock", "r.lock.fence"], "no guard or temp file left");
  } finally {
    held?.open();
    await f.remove();
  }
});

test("a read that catches our own rewrite in place half written waits for it, and never drops the lease", async () => {
  const f = await fixture();
  let held: { reached: Promise<void>; open(): void } | undefined;
  try {
    const now = Date.now();
    const path = join(f.dir, "r.lock");
    let renewal: Promise<LeaseRecord | undefined>;
    ({ held, renewal } = await renewalHeldAfterItsWrite(f, now));
    // What a reader can see while a write lands: the new text's first half over the old one.
    const whole = await readFile(path);
    const fd = openSync(path, "r+");
    try {
      writeSync(fd, Buffer.alloc(whole.length >> 1, "x"), 0, whole.length >> 1, 0);
      const read = f.store.read("r");
      // The write "finishes" before the read is answered.
      writeSync(fd, whole, 0, whole.length, 0);
      held.open();
      const state = await withTimeout(read, 5_000, "the read");
      assert.equal(state.kind, "held", `not unreadable: ${JSON.stringify(state)}`);
      assert.equal(state.kind === "held" && state.lease.leaseIdHash, hashLeaseId("mine"));
    } finally {
      closeSync(fd);
    }
    assert.equal((await renewal)?.expiresAt, now + 14_000);
    // (This test's own writes moved the mtime, so the file is no longer exactly as
    // the store wrote it: the next renewal reads it under the guard, and still renews.)
    assert.equal((await f.at(now + 4_500).renew("r", hashLeaseId("mine")))?.expiresAt, now + 14_500);
  } finally {
    held?.open();
    await f.remove();
  }
});

test("a rewrite in place whose fdatasync fails reports the error and keeps the lease file: its holder still holds on the promise it had", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const path = join(f.dir, "r.lock");
    granted(await f.at(now).acquire("r", grant("mine")));
    // The write lands, then the sync fails.
    f.fs.fail("overwriteSynced", "EIO", { match: (p) => p === path, after: true });
    await assert.rejects(f.at(now + 4_000).renew("r", hashLeaseId("mine")), (err) => assertStoreError(err, StoreUnavailableError, path, "EIO"));
    f.fs.heal();
    const state = await f.at(now + 5_000).read("r");
    assert.equal(state.kind === "held" && state.lease.leaseIdHash, hashLeaseId("mine"));
    assert.equal((await assertValidLeaseFile(path)).fencing_token, 1);
    assert.ok("blocked" in (await f.store.acquire("r", grant("other"))));
    // The next renewal finds the file (ours, but not as last recorded) and writes it again under the guard, durably.
    const before = await stat(path);
    assert.equal((await f.at(now + 6_000).renew("r", hashLeaseId("mine")))?.expiresAt, now + 16_000);
    assert.notEqual((await stat(path)).ino, before.ino, "rewritten under the guard: a new file renamed into place");
    assert.equal((await f.at(now + 9_000).renew("r", hashLeaseId("mine")))?.expiresAt, now + 19_000);
    assert.deepEqual(await entries(f.dir), ["r.lock", "r.lock.fence"], "no guard or temp file left");
  } finally {
    f.fs.heal();
    await f.remove();
  }
});

test("a renewal never writes into a lease file that changed since our write: it reads it under the guard", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    granted(await f.at(now).acquire("r", grant("mine")));
    // Someone rewrites the file (same content, new inode): it is no longer ours as written.
    const path = join(f.dir, "r.lock");
    const text = await readFile(path);
    await writeFile(`${path}.hand`, text);
    await rename(`${path}.hand`, path);
    const kept = join(f.dir, "kept-hand-written");
    await link(path, kept);
    assert.equal((await f.at(now + 4_000).renew("r", hashLeaseId("mine")))?.expiresAt, now + 14_000);
    assert.deepEqual(await readFile(kept), text, "nothing written into the changed file");
    assert.notEqual((await stat(path)).ino, (await stat(kept)).ino, "the renewal replaced it under the guard");
    assert.equal((await assertValidLeaseFile(path)).expires_at, new Date(now + 15_000).toISOString());
  } finally {
    await f.remove();
  }
});

test("a rewrite in place of a file replaced between its write and its sync is lost, and the new file is left as it is", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const path = join(f.dir, "r.lock");
    granted(await f.at(now).acquire("r", grant("mine")));
    const replacement = validDocument("r", { fencing_token: 9, expires_at: new Date(now + 60_000).toISOString() });
    // Right after the write, someone renames another lease over the name.
    f.fs.overwriteHook = () => {
      writeFileSync(`${path}.other`, replacement);
      renameSync(`${path}.other`, path);
    };
    assert.equal(await f.at(now + 4_000).renew("r", hashLeaseId("mine")), undefined, "lost");
    f.fs.overwriteHook = undefined;
    assert.equal(await readFile(path, "utf8"), replacement);
  } finally {
    await f.remove();
  }
});

test("a rewrite in place that lands after the horizon it overwrote is lost; the file is reclaimed at the promise", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const path = join(f.dir, "r.lock");
    granted(await f.at(now).acquire("r", grant("mine")));
    // The write took so long that the version it overwrote (horizon now + 11 s) had expired.
    f.fs.overwriteHook = () => f.clock.set(now + 11_000);
    assert.equal(await f.at(now + 9_000).renew("r", hashLeaseId("mine")), undefined, "lost: someone may have judged the old version expired");
    f.fs.overwriteHook = undefined;
    assert.deepEqual(await f.at(now + 11_000).reclaimIfExpired("r"), { kind: "free", resource: "r" });
    assert.deepEqual(await entries(f.dir), ["r.lock.fence"]);
  } finally {
    await f.remove();
  }
});

test("the store that made a promise ends the lease at the promise, before the file's horizon", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    granted(await f.at(now).acquire("r", grant("mine")));
    const blocked = await f.at(now + 9_999).acquire("r", grant("other", { holder: "bob" }));
    assert.ok("blocked" in blocked);
    assert.deepEqual(await f.at(now + 9_999).reclaimIfExpired("r"), (await f.store.read("r")));
    assert.deepEqual(await f.at(now + 10_000).reclaimIfExpired("r"), { kind: "free", resource: "r" });
    assert.deepEqual(await entries(f.dir), ["r.lock.fence"], "the file is gone although its expires_at is later");
    assert.equal(await f.at(now + 10_000).renew("r", hashLeaseId("mine")), undefined);
  } finally {
    await f.remove();
  }
});

test("another store (a restart, another process) holds a lease until the file's horizon", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    granted(await f.at(now).acquire("r", grant("mine")));
    const other = new LeaseFileStore({ clock: f.clock, dir: f.dir });
    const seen = await other.read("r");
    assert.equal(seen.kind === "held" && seen.lease.expiresAt, now + 11_000, "the promise + 1 s, not more");
    assert.ok("blocked" in (await f.at(now + 10_999, other).acquire("r", grant("other", { holder: "bob" }))));
    // The holder renews through the other store: it has no promise, so it writes under the guard.
    const renewed = await f.at(now + 5_000, other).renew("r", hashLeaseId("mine"));
    assert.equal(renewed?.expiresAt, now + 15_000);
    const document = await assertValidLeaseFile(join(f.dir, "r.lock"));
    assert.equal(document.expires_at, new Date(now + 16_000).toISOString());
    // The first store sees a file it did not write: its old promise no longer counts.
    const reread = await f.store.read("r");
    assert.equal(reread.kind === "held" && reread.lease.expiresAt, now + 16_000);
    assert.equal(await f.at(now + 6_000).renew("r", hashLeaseId("mine")).then((l) => l?.expiresAt), now + 16_000);
  } finally {
    await f.remove();
  }
});

test("a lease file changed by hand is re-read by the next renewal, never renewed from memory", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    granted(await f.at(now).acquire("r", grant("mine")));
    await rm(join(f.dir, "r.lock"));
    assert.equal(await f.at(now + 1_000).renew("r", hashLeaseId("mine")), undefined, "deleted: lost at once");
  } finally {
    await f.remove();
  }
});

test("handOver replaces only the live lease of the given hash with the next holder's, token + 1", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const first = granted(await f.at(now).acquire("r", grant("mine")));
    const next = grant("next", { holder: "bob" });
    assert.deepEqual(await f.at(now).handOver("r", hashLeaseId("not-mine"), next), { released: false });
    const outcome = await f.at(now + 1_000).handOver("r", hashLeaseId("mine"), next);
    assert.equal(outcome.released, true);
    assert.equal(outcome.granted?.holder, "bob");
    assert.equal(outcome.granted?.fencingToken, first.fencingToken + 1);
    assert.equal(outcome.granted?.expiresAt, now + 11_000);
    const document = await assertValidLeaseFile(join(f.dir, "r.lock"));
    assert.equal(document.lease_id_sha256, hashLeaseId("next"));
    // An expired lease is not handed over: it is reclaimed, and the release reports it.
    assert.deepEqual(await f.at(now + 11_000).handOver("r", hashLeaseId("next"), grant("third")), { released: false });
    assert.deepEqual(await entries(f.dir), ["r.lock.fence"]);
    await assertNoTempFiles(f.dir);
  } finally {
    await f.remove();
  }
});

test("a hand-over whose grant cannot be written still releases", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    granted(await f.at(now).acquire("r", grant("mine")));
    f.fs.fail("rename", "ENOSPC");
    const outcome = await f.at(now).handOver("r", hashLeaseId("mine"), grant("next"));
    f.fs.heal();
    assert.deepEqual(outcome, { released: true });
    assert.deepEqual(await entries(f.dir), ["r.lock.fence"], "the old lease is gone, no temp file left");
    assert.ok(f.warnings.some((w) => w.includes("handing r over failed")), f.warnings.join("; "));
  } finally {
    await f.remove();
  }
});

test("release removes only its own lease, keeps the fence, and reports expired ones", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const first = granted(await f.at(now).acquire("r", grant("mine")));
    assert.equal(await f.at(now).release("r", hashLeaseId("not-mine")), false);
    assert.deepEqual(await entries(f.dir), ["r.lock", "r.lock.fence"], "someone else's release leaves the file");
    assert.equal(await f.at(now + 1).release("r", hashLeaseId("mine")), true);
    assert.deepEqual(await entries(f.dir), ["r.lock.fence"]);
    assert.equal(await f.at(now + 2).release("r", hashLeaseId("mine")), false, "already released");

    const late = granted(await f.at(now).acquire("r", grant("late")));
    assert.equal(late.fencingToken, first.fencingToken + 1, "same store, nobody in between: the next token");
    assert.equal(await f.at(now + 10_000).release("r", hashLeaseId("late")), false, "expired: not released");
    assert.deepEqual(await entries(f.dir), ["r.lock.fence"], "but the expired file is reclaimed on the way");
    await fenceBounding(f.dir, "r", late.fencingToken);
  } finally {
    await f.remove();
  }
});

test("reclaimIfExpired removes expired leases only", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const lease = granted(await f.at(now).acquire("r", grant()));
    assert.deepEqual(await f.at(now + 9_999).reclaimIfExpired("r"), { kind: "held", resource: "r", lease });
    assert.ok((await entries(f.dir)).includes("r.lock"));
    assert.deepEqual(await f.at(now + 10_000).reclaimIfExpired("r"), { kind: "free", resource: "r" });
    assert.deepEqual(await entries(f.dir), ["r.lock.fence"]);
    assert.deepEqual(await f.at(now + 10_000).reclaimIfExpired("r"), { kind: "free", resource: "r" });
  } finally {
    await f.remove();
  }
});

test("list returns lease files in name order and ignores every other entry", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    granted(await f.at(now).acquire("b", grant("b")));
    granted(await f.at(now).acquire("a", grant("a")));
    await writeFile(join(f.dir, "c.lock"), "garbage");
    await writeFile(
      join(f.dir, "d.lock"),
      validDocument("d", { acquired_at: new Date(now - 60_000).toISOString(), expires_at: new Date(now - 30_000).toISOString() }),
    );
    await writeFile(join(f.dir, ".a.123.abcdef.tmp"), validDocument("a"));
    await writeFile(join(f.dir, ".hidden.lock"), validDocument("hidden"));
    await writeFile(join(f.dir, "bad name.lock"), validDocument("bad name"));
    await writeFile(join(f.dir, "notes.txt"), "hello");
    await mkdir(join(f.dir, "x.lock.guard"));
    const states = await f.store.list();
    assert.deepEqual(
      states.map((s) => [s.resource, s.kind]),
      [
        ["a", "held"],
        ["b", "held"],
        ["c", "unreadable"],
        ["d", "held"],
      ],
    );
    // Expired leases are listed too (the manager reclaims them at start), with their real expiry.
    const d = states[3]!;
    assert.equal(d.kind === "held" && d.lease.expiresAt, now - 30_000);
    // A lock dir listing also works after a temp file shows up with a lease-like name.
    await writeFile(join(f.dir, ".b.lock"), "x");
    assert.equal((await f.store.list()).length, 4);
  } finally {
    await f.remove();
  }
});

const unreadableContents: Array<[string, string | Buffer]> = [
  ["empty", ""],
  ["torn JSON", '{"version":1,"reso'],
  ["garbage bytes", Buffer.from([0x00, 0xff, 0xfe, 0x13, 0x37, 0x80, 0x0a])],
  ["unknown version", validDocument("r", { version: 4 })],
  ["version 3 without its checksum", validDocument("r", { version: 3 })],
  ["wrong resource", validDocument("other")],
];

for (const [name, content] of unreadableContents) {
  test(`an unreadable lease file (${name}) blocks for mtime + 1 h, then is reclaimed`, async () => {
    const f = await fixture();
    try {
      const path = join(f.dir, "r.lock");
      await writeFile(path, content);
      const { mtimeMs } = await stat(path);
      const now = Date.now();
      const state = await f.store.read("r");
      assert.equal(state.kind, "unreadable");
      assert.ok(state.kind === "unreadable");
      assert.equal(state.modifiedAt, mtimeMs);
      assert.equal(state.blockedUntil, mtimeMs + 3_600_000);
      assert.ok(state.reason.length > 0);

      const blocked = await f.at(now).acquire("r", grant());
      assert.ok("blocked" in blocked && blocked.blocked.kind === "unreadable");
      assert.equal((await f.at(now).reclaimIfExpired("r")).kind, "unreadable");
      assert.deepEqual(await readFile(path), Buffer.from(content), "an unreadable file is never overwritten early");

      await backdate(path, 3_600_000 + 60_000);
      const lease = granted(await f.at(Date.now()).acquire("r", grant()));
      // A token in a file that is otherwise invalid may have been issued: it counts.
      const inFile = typeof content === "string" && content.includes('"fencing_token":41') ? 41 : 0;
      assert.equal(lease.fencingToken, inFile + 1);
      assert.equal(await assertValidLockDir(f.dir), 1);

      // reclaimIfExpired also takes an old unreadable file away.
      await writeFile(join(f.dir, "s.lock"), content);
      await backdate(join(f.dir, "s.lock"), 3_600_000 + 60_000);
      assert.deepEqual(await f.at(Date.now()).reclaimIfExpired("s"), { kind: "free", resource: "s" });
      assert.equal((await entries(f.dir)).includes("s.lock"), false);
    } finally {
      await f.remove();
    }
  });
}

test("a hand-edited expires_at far in the future is capped at mtime + 1 h", async () => {
  const f = await fixture();
  try {
    const path = join(f.dir, "r.lock");
    await writeFile(path, validDocument("r", { expires_at: "2100-01-01T00:00:00Z" }));
    const { mtimeMs } = await stat(path);
    const state = await f.store.read("r");
    assert.ok(state.kind === "held");
    assert.equal(state.lease.expiresAt, mtimeMs + 3_600_000);
    assert.ok("blocked" in (await f.at(Date.now()).acquire("r", grant())));

    await backdate(path, 2 * 3_600_000);
    const lease = granted(await f.at(Date.now()).acquire("r", grant()));
    assert.equal(lease.fencingToken, 42, "one above the token in the expired file");
  } finally {
    await f.remove();
  }
});

test("the new token is one above the higher of the fence file and an expired lease's token", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const expired = { acquired_at: new Date(now - 60_000).toISOString(), expires_at: new Date(now - 30_000).toISOString() };
    await writeFile(join(f.dir, "a.lock"), validDocument("a", { ...expired, fencing_token: 9 }));
    await writeFile(join(f.dir, "a.lock.fence"), JSON.stringify({ version: 1, resource: "a", fencing_token: 5 }));
    assert.equal(granted(await f.at(now).acquire("a", grant())).fencingToken, 10);
    await fenceBounding(f.dir, "a", 10);

    await writeFile(join(f.dir, "b.lock"), validDocument("b", { ...expired, fencing_token: 9 }));
    await writeFile(join(f.dir, "b.lock.fence"), JSON.stringify({ version: 1, resource: "b", fencing_token: 12 }));
    assert.equal(granted(await f.at(now).acquire("b", grant())).fencingToken, 13);
    await fenceBounding(f.dir, "b", 13);
  } finally {
    await f.remove();
  }
});

for (const [name, content] of [
  ["garbage", "garbage"],
  ["empty", ""],
  ["another resource's counter", JSON.stringify({ version: 1, resource: "other", fencing_token: 3 })],
  ["negative", JSON.stringify({ version: 1, resource: "r", fencing_token: -1 })],
  ["fractional", JSON.stringify({ version: 1, resource: "r", fencing_token: 1.5 })],
  ["at version 2", JSON.stringify({ version: 2, resource: "r", fencing_token: 3 })],
  ["version-less", JSON.stringify({ resource: "r", fencing_token: 3 })],
] as const) {
  test(`a fence file that is ${name} stops acquisition with StoreFailureError and writes nothing`, async () => {
    const f = await fixture();
    try {
      const fence = join(f.dir, "r.lock.fence");
      await writeFile(fence, content);
      await assert.rejects(f.at(Date.now()).acquire("r", grant()), (err: unknown) => {
        assert.ok(err instanceof StoreFailureError, `got ${String(err)}`);
        assert.ok(err.message.includes(fence), err.message);
        assert.ok(err.message.includes("corrupt"), err.message);
        return true;
      });
      assert.deepEqual(await entries(f.dir), ["r.lock.fence"], "no lease file, no temp, no guard left");
      assert.equal(await readFile(fence, "utf8"), content, "the corrupt counter is not rewritten");
      // Repairing the counter (raising it) makes acquisition work again, above the repaired value.
      await writeFile(fence, JSON.stringify({ version: 1, resource: "r", fencing_token: 100 }));
      assert.equal(granted(await f.at(Date.now()).acquire("r", grant())).fencingToken, 101);
    } finally {
      await f.remove();
    }
  });
}

test("a fence file of 0 is valid: nothing was issued yet, the first token is 1", async () => {
  const f = await fixture();
  try {
    await writeFile(join(f.dir, "r.lock.fence"), JSON.stringify({ version: 1, resource: "r", fencing_token: 0 }));
    assert.equal(granted(await f.at(Date.now()).acquire("r", grant())).fencingToken, 1);
  } finally {
    await f.remove();
  }
});

test("reclaiming an expired lease whose token is above the fence raises the fence first", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const expired = { acquired_at: new Date(now - 60_000).toISOString(), expires_at: new Date(now - 30_000).toISOString() };
    await writeFile(join(f.dir, "r.lock"), validDocument("r", { ...expired, fencing_token: 9 }));
    await writeFile(join(f.dir, "r.lock.fence"), JSON.stringify({ version: 1, resource: "r", fencing_token: 5 }));
    assert.deepEqual(await f.at(now).reclaimIfExpired("r"), { kind: "free", resource: "r" });
    // The version 1 counter was converted (and kept aside, docs/protocol.md §9).
    assert.deepEqual(await entries(f.dir), ["r.lock.fence", "r.lock.fence.v1"]);
    assert.equal(await readFenceToken(f.dir, "r"), 9);
    assert.equal(granted(await f.at(now).acquire("r", grant())).fencingToken, 10, "token 9 is never issued again");
    // Without a fence file at all, the same holds.
    await writeFile(join(f.dir, "s.lock"), validDocument("s", { ...expired, fencing_token: 4 }));
    await f.at(now).reclaimIfExpired("s");
    assert.equal(granted(await f.at(now).acquire("s", grant())).fencingToken, 5);
    await assertNoTempFiles(f.dir);
  } finally {
    await f.remove();
  }
});

const errnoCases: Array<[string, typeof StoreUnavailableError | typeof StoreFailureError]> = [
  ["EACCES", StoreUnavailableError],
  ["ENOSPC", StoreUnavailableError],
  ["EIO", StoreUnavailableError],
  ["EINVAL", StoreFailureError],
];

for (const [code, kind] of errnoCases) {
  test(`${code} from the file system becomes ${kind.name} naming the path and errno, and the store recovers`, async () => {
    const f = await fixture();
    try {
      const lease = join(f.dir, "r.lock");
      const fence = join(f.dir, "r.lock.fence");
      const now = Date.now();

      f.fs.fail("readFileWithMtime", code);
      await assert.rejects(f.store.read("r"), (err) => assertStoreError(err, kind, lease, code));
      await assert.rejects(f.at(now).acquire("r", grant()), (err) => assertStoreError(err, kind, lease, code));
      f.fs.heal();

      f.fs.fail("writeNewFileSynced", code);
      await assert.rejects(f.at(now).acquire("r", grant()), (err) => assertStoreError(err, kind, fence, code));
      assert.equal(f.fs.injected, 3);
      f.fs.fail("writeNewFileSynced", code, { match: (path) => path.endsWith(".tmp") });
      await assert.rejects(f.at(now).acquire("r", grant()), (err) => assertStoreError(err, kind, lease, code));
      f.fs.heal();

      f.fs.fail("readdir", code);
      await assert.rejects(f.store.list(), (err) => assertStoreError(err, kind, f.dir, code));
      f.fs.heal();

      f.fs.fail("mkdir", code);
      await assert.rejects(f.store.open(), (err) => assertStoreError(err, kind, f.dir, code));
      f.fs.heal();

      assert.equal(f.fs.injected, 6);
      assert.deepEqual(await entries(f.dir), ["r.lock.fence"], "failed acquisitions leave no lease, temp or guard behind");
      const granted1 = granted(await f.at(now).acquire("r", grant("x")));
      assert.equal(granted1.fencingToken, 2, "the token burnt by the failed lease write is never reused");

      f.fs.fail("unlink", code);
      await assert.rejects(f.at(now).release("r", hashLeaseId("x")), (err) => assertStoreError(err, kind, lease, code));
      f.fs.heal();
      assert.equal(await f.at(now).release("r", hashLeaseId("x")), true);

      // The lock dir's fsync after the lease file landed fails: the lease file is taken away again.
      f.fs.fail("syncDirectory", code, { match: (path) => path === f.dir });
      await assert.rejects(f.at(now).acquire("r", grant("y")), (err) => assertStoreError(err, kind, lease, code));
      f.fs.heal();
      assert.deepEqual(await entries(f.dir), ["r.lock.fence"], "a failed grant leaves no lease file");

      // The counter's fsync fails: nothing is granted.
      const restarted = new LeaseFileStore({ clock: f.clock, dir: f.dir, fs: f.fs });
      const fenceBefore = await fenceBounding(f.dir, "r", granted1.fencingToken + 1);
      f.fs.fail("syncDirectory", code, { match: (path) => path === fence });
      await assert.rejects(f.at(now, restarted).acquire("r", grant("z")), (err) => assertStoreError(err, kind, fence, code));
      f.fs.heal();
      assert.equal(f.fs.injected, 9);
      await assertNoTempFiles(f.dir);
      assert.equal(await assertValidLockDir(f.dir), 0);
      // Whatever landed, no token is issued twice: the next grant is above every fence value seen.
      const after = granted(await f.at(now).acquire("r", grant("w")));
      assert.ok(after.fencingToken > fenceBefore, `token ${after.fencingToken} must be above ${fenceBefore}`);
      await fenceBounding(f.dir, "r", after.fencingToken);
    } finally {
      await f.remove();
    }
  });
}

test("a failed link onto the lease file leaves no temp file; the token it burnt is never reused", async () => {
  const f = await fixture();
  try {
    const lease = join(f.dir, "r.lock");
    f.fs.fail("link", "EIO", { match: (to) => to === lease });
    await assert.rejects(f.at(Date.now()).acquire("r", grant()), (err) =>
      assertStoreError(err, StoreUnavailableError, lease, "EIO"),
    );
    assert.deepEqual(await entries(f.dir), ["r.lock.fence"], "fence written first, no lease, no temp");
    const burnt = 1; // the first token, written into the fence before the lease file failed
    assert.equal(await fenceBounding(f.dir, "r", burnt), burnt);
    f.fs.heal();
    assert.equal(granted(await f.at(Date.now()).acquire("r", grant())).fencingToken, burnt + 1, "same store: the next token");
    // A new store (the process died after the failure) starts above the fence, so above the burnt token too.
    const restarted = new LeaseFileStore({ clock: f.clock, dir: f.dir });
    assert.equal(await readFenceToken(f.dir, "r"), burnt + 1, "the counter names the last token issued");
    // Past the horizon of the file the first store wrote (ttl + 60 s).
    assert.equal(granted(await f.at(Date.now() + 70_000, restarted).acquire("r", grant())).fencingToken, burnt + 2);
    await assertNoTempFiles(f.dir);
  } finally {
    await f.remove();
  }
});

test("a write that created its temp file and then failed leaves no temp file", async () => {
  const f = await fixture();
  try {
    f.fs.fail("writeNewFileSynced", "ENOSPC", { after: true });
    await assert.rejects(f.at(Date.now()).acquire("r", grant()), StoreUnavailableError);
    assert.deepEqual(await entries(f.dir), [], "the temp file was created and must have been removed");
    f.fs.heal();
    assert.equal(granted(await f.at(Date.now()).acquire("r", grant())).fencingToken, 1);
    await assertNoTempFiles(f.dir);
  } finally {
    await f.remove();
  }
});

test("a failed renewal write leaves the previous lease file intact", async () => {
  const f = await fixture();
  try {
    const now = Date.now();
    const path = join(f.dir, "r.lock");
    granted(await f.at(now).acquire("r", grant("mine")));
    const before = await readFile(path);
    // In place: nothing written when the write itself fails.
    f.fs.fail("overwriteSynced", "ENOSPC");
    await assert.rejects(f.at(now + 4_000).renew("r", hashLeaseId("mine")), (err) => assertStoreError(err, StoreUnavailableError, path, "ENOSPC"));
    f.fs.heal();
    assert.deepEqual(await readFile(path), before);
    // A store without a promise (a restart) renews under the guard: a failed rename or temp file leaves the file too.
    const other = new LeaseFileStore({ clock: f.clock, dir: f.dir, fs: f.fs });
    for (const [method, after] of [
      ["rename", false],
      ["writeNewFileSynced", true],
    ] as const) {
      f.fs.fail(method, "ENOSPC", { after });
      await assert.rejects(f.at(now + 5_000, other).renew("r", hashLeaseId("mine")), (err) =>
        assertStoreError(err, StoreUnavailableError, path, "ENOSPC"),
      );
      f.fs.heal();
      assert.deepEqual(await readFile(path), before);
      await assertNoTempFiles(f.dir);
    }
    assert.equal((await f.at(now + 5_000).renew("r", hashLeaseId("mine")))?.expiresAt, now + 15_000);
    const document = await assertValidLeaseFile(path);
    assert.equal(document.renewed_at, new Date(now + 5_000).toISOString());
    assert.equal(document.expires_at, new Date(now + 16_000).toISOString(), "a new horizon: now + ttl + 1 s");
  } finally {
    await f.remove();
  }
});

test("an older participant's lease file is read as held, and warned about once", async () => {
  const f = await fixture();
  try {
    await writeFile(join(f.dir, "a.lock"), validDocument("a", { version: 2 }));
    await writeFile(join(f.dir, "b.lock"), validDocument("b", { version: 1 }));
    const states = await f.store.list();
    assert.deepEqual(states.map((state) => [state.resource, state.kind]), [["a", "held"], ["b", "held"]]);
    const warned = f.warnings.filter((w) => w.includes("lease file; a version"));
    assert.equal(warned.length, 1, f.warnings.join("\n"));
    assert.match(warned[0]!, /a version 2 participant may be running.*cannot read version 3/);
    await f.store.list();
    assert.equal(f.warnings.filter((w) => w.includes("lease file; a version")).length, 1, "once per process");
  } finally {
    await f.remove();
  }
});

test("a lock dir removed under the store is made again by the next acquire", async () => {
  const temp = await makeTempDir();
  try {
    const dir = join(temp.path, "missing");
    const store = new LeaseFileStore({ dir });
    const lease = granted(await withTimeout(store.acquire("r", grant()), 10_000, "acquire"));
    assert.equal(lease.fencingToken, 1);
    assert.deepEqual(await entries(dir), ["r.lock", "r.lock.fence"]);
    assert.equal(await assertValidLockDir(dir), 1);
  } finally {
    await temp.remove();
  }
});

test("a guard that cannot be made for a reason other than a busy guard is reported at once (ENOTDIR)", async () => {
  const temp = await makeTempDir();
  try {
    // The lock dir path is a regular file: mkdir of the guard fails with ENOTDIR, which no
    // amount of waiting fixes, so it must reach the caller promptly, not after ~15 s of retries.
    const dir = join(temp.path, "not-a-dir");
    await writeFile(dir, "");
    const store = new LeaseFileStore({ dir });
    const started = Date.now();
    await assert.rejects(withTimeout(store.acquire("r", grant()), 30_000, "acquire"), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError, String(err));
      assert.ok(err.message.includes(join(dir, "r.lock.guard")), err.message);
      assert.ok(err.message.includes("ENOTDIR"), err.message);
      return true;
    });
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 5_000, `ENOTDIR took ${elapsed} ms to be reported`);
    await assert.rejects(store.open(), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError || err instanceof StoreFailureError, String(err));
      assert.ok(err.message.includes(dir), err.message);
      return true;
    });
  } finally {
    await temp.remove();
  }
});

test("a guard dir left by a crashed process is broken once stale, and acquire succeeds", async () => {
  const f = await fixture();
  try {
    const guard = join(f.dir, "r.lock.guard");
    await mkdir(guard);
    await backdate(guard, 20_000);
    const started = Date.now();
    const lease = granted(await withTimeout(f.at(Date.now()).acquire("r", grant()), 10_000, "acquire"));
    assert.equal(lease.fencingToken, 1);
    assert.ok(Date.now() - started < 5_000, "a stale guard is broken at once, not after retries");
    assert.deepEqual(await entries(f.dir), ["r.lock", "r.lock.fence"], "the guard is gone afterwards");
  } finally {
    await f.remove();
  }
});

test("a fresh guard dir is respected until it is removed", async () => {
  const f = await fixture();
  try {
    const guard = join(f.dir, "r.lock.guard");
    await mkdir(guard);
    let settled = false;
    const acquiring = f.at(Date.now()).acquire("r", grant()).finally(() => (settled = true));
    // Not a timing assertion on the store: it must simply not have gone ahead while the guard is held.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(settled, false, "acquire went ahead while another process held the guard");
    assert.deepEqual(await entries(f.dir), ["r.lock.guard"]);
    await rmdir(guard);
    assert.equal(granted(await withTimeout(acquiring, 5_000, "acquire after the guard was released")).fencingToken, 1);
  } finally {
    await f.remove();
  }
});

test("watch reports changes to lease files by resource name", async () => {
  const f = await fixture();
  const seen: Array<string | undefined> = [];
  let notify: (() => void) | undefined;
  const stop = f.store.watch((resource) => {
    seen.push(resource);
    notify?.();
  });
  try {
    const sawExt = new Promise<void>((resolve) => {
      notify = () => {
        if (seen.includes("ext")) resolve();
      };
    });
    await writeFile(join(f.dir, "notes.txt"), "not a lease");
    await writeFile(join(f.dir, "ext.lock"), validDocument("ext"));
    await withTimeout(sawExt, 5_000, 'a watch event for "ext"');
    assert.ok(!seen.some((r) => r !== undefined && r !== "ext"), `only lease files are reported: ${JSON.stringify(seen)}`);
  } finally {
    stop();
    await f.remove();
  }
});

test("a watch that cannot start is retried, and then reports that anything may have changed", async () => {
  const f = await fixture();
  let resolveRestart: (() => void) | undefined;
  const restarted = new Promise<void>((resolve) => (resolveRestart = resolve));
  f.fs.fail("watch", "ENOSPC");
  const stop = f.store.watch((resource) => {
    if (resource === undefined) resolveRestart?.();
  });
  try {
    assert.equal(f.fs.injected, 1);
    assert.ok(f.warnings.some((w) => w.includes(f.dir) && w.includes("ENOSPC")), JSON.stringify(f.warnings));
    await withTimeout(restarted, 5_000, "the watch to be restarted");
    // The restarted watch works.
    const sawExt = new Promise<void>((resolve) => {
      const stop2 = f.store.watch((resource) => {
        if (resource === "ext") {
          stop2();
          resolve();
        }
      });
    });
    await writeFile(join(f.dir, "ext.lock"), validDocument("ext"));
    await withTimeout(sawExt, 5_000, 'a watch event for "ext"');
  } finally {
    stop();
    await f.remove();
  }
});
