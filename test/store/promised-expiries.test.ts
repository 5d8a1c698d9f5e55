// PromisedExpiries during an in-place rewrite: the file being written counts
// as ours before the write is durable (its mtime moves first), but a promise
// never passes the horizon that is already durable (docs/protocol.md, "The
// renewal horizon": every write of a horizon is on disk before the holder is
// told anything that relies on it).
import { test } from "node:test";
import assert from "node:assert/strict";
import type { LeaseRecord } from "../../src/core/lease.ts";
import { MAX_TTL_MS } from "../../src/core/limits.ts";
import { horizonFor, PromisedExpiries } from "../../src/store/promised-expiries.ts";

const T0 = 1_800_000_000_000;

function onDisk(horizon: number): LeaseRecord {
  return {
    resource: "r",
    holder: "alice",
    fencingToken: 1,
    acquiredAt: T0,
    expiresAt: horizon,
    ttlMs: 10_000,
    metadata: {},
    leaseIdHash: "h",
    pid: 1,
    hostname: "here",
  };
}

// Identities as FileSystem.identity makes them: inode, mtime in ns, size.
const A = "7:100:300";
/** A after an in-place rewrite: same inode and size, a later mtime. */
const A_REWRITTEN = "7:200:300";
/** Another file (a rename put it there). */
const OTHER = "8:300:300";

test("a rewrite in flight is ours at its inode and size, bounded by the durable horizon until it is recorded", () => {
  const promises = new PromisedExpiries();
  // Written at T0, horizon +11 s; renewed at +0.5 s: promised until +10.5 s.
  promises.wrote(A, onDisk(T0 + 11_000), T0 + 10_000);
  assert.ok(promises.extend("r", "h", A, T0 + 500));
  assert.equal(promises.extend("r", "h", A_REWRITTEN, T0 + 600), undefined, "a changed mtime is not ours");
  promises.rewriting("r", A);
  assert.equal(promises.extend("r", "h", A_REWRITTEN, T0 + 700)?.expiresAt, T0 + 10_700, "the version being written is ours");
  assert.equal(promises.extend("r", "h", A, T0 + 800)?.expiresAt, T0 + 10_800, "so is the one before it, still");
  assert.equal(promises.extend("r", "h", OTHER, T0 + 800), undefined, "another file never is");
  assert.equal(promises.extend("r", "h", A_REWRITTEN, T0 + 1_100), undefined, "past the durable horizon: the caller must write");
  assert.equal(promises.apply(A_REWRITTEN, onDisk(T0 + 11_700)).expiresAt, T0 + 10_800, "a read of the version being written keeps the promise");
  promises.rewrote(A, A_REWRITTEN, onDisk(T0 + 11_700));
  assert.equal(promises.extend("r", "h", A_REWRITTEN, T0 + 1_100)?.expiresAt, T0 + 11_100, "recorded: the new horizon counts");
  assert.equal(promises.extend("r", "h", A, T0 + 1_200), undefined, "the version before it is not ours any more");
});

test("a rewrite that did not land leaves only the version before it ours", () => {
  const promises = new PromisedExpiries();
  promises.wrote(A, onDisk(T0 + 11_000), T0 + 10_000);
  promises.rewriting("r", A);
  promises.rewriteFailed("r");
  assert.equal(promises.extend("r", "h", A_REWRITTEN, T0 + 500), undefined);
  assert.equal(promises.extend("r", "h", A, T0 + 500)?.expiresAt, T0 + 10_500);
});

test("a rewrite noted for a version that is no longer ours is ignored", () => {
  const promises = new PromisedExpiries();
  promises.wrote(A, onDisk(T0 + 11_000), T0 + 10_000);
  promises.rewriting("r", OTHER);
  assert.equal(promises.extend("r", "h", A_REWRITTEN, T0 + 500), undefined);
});

test("the horizon is the promise + 1 s, never beyond the maximum ttl past now", () => {
  assert.equal(horizonFor(T0, 10_000), T0 + 11_000);
  assert.equal(horizonFor(T0, 1_000), T0 + 2_000);
  assert.equal(horizonFor(T0, MAX_TTL_MS - 500), T0 + MAX_TTL_MS);
  assert.equal(horizonFor(T0, MAX_TTL_MS), T0 + MAX_TTL_MS, "the promise itself at the cap");
});

test("a background rewrite falls due once less than a quarter of the headroom is left", () => {
  const promises = new PromisedExpiries();
  promises.wrote(A, onDisk(T0 + 11_000), T0 + 10_000);
  assert.ok(promises.extend("r", "h", A, T0 + 700));
  assert.equal(promises.dueForRefresh("r", "h", T0 + 700), undefined, "300 ms of headroom left");
  assert.ok(promises.extend("r", "h", A, T0 + 800));
  assert.ok(promises.dueForRefresh("r", "h", T0 + 800), "200 ms left");
  assert.equal(promises.dueForRefresh("r", "other", T0 + 800), undefined, "another lease's");
});
