// PromisedExpiries during a background rewrite: the file our rewrite renamed
// into place counts as ours before its directory fsync, but a promise never
// passes the horizon that is already durable (docs/protocol.md, "The renewal
// horizon": every write of a horizon is fsynced before the holder is told
// anything that relies on it).
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

test("a rewrite in flight is ours, bounded by the durable horizon until it is recorded", () => {
  const promises = new PromisedExpiries();
  // Written at T0, last renewed at +50 s: promised until +60 s.
  promises.wrote("A", onDisk(T0 + 70_000), T0 + 60_000);
  assert.equal(promises.extend("r", "h", "B", T0 + 54_000), undefined, "an unknown version is not ours");
  promises.rewriting("r", "A", "B");
  assert.equal(promises.extend("r", "h", "B", T0 + 56_000)?.expiresAt, T0 + 66_000, "the renamed version is ours");
  assert.equal(promises.extend("r", "h", "A", T0 + 57_000)?.expiresAt, T0 + 67_000, "so is the one before it, still");
  assert.equal(promises.extend("r", "h", "B", T0 + 61_000), undefined, "past the durable horizon: the caller must write");
  assert.equal(promises.apply("B", onDisk(T0 + 124_000)).expiresAt, T0 + 67_000, "a read of the renamed version keeps the promise");
  promises.rewrote("A", "B", onDisk(T0 + 124_000));
  assert.equal(promises.extend("r", "h", "B", T0 + 61_000)?.expiresAt, T0 + 71_000, "recorded: the new horizon counts");
  assert.equal(promises.extend("r", "h", "A", T0 + 62_000), undefined, "the version before it is not ours any more");
});

test("a rewrite that did not land leaves only the version before it ours", () => {
  const promises = new PromisedExpiries();
  // Written at T0, last renewed at +50 s: promised until +60 s.
  promises.wrote("A", onDisk(T0 + 70_000), T0 + 60_000);
  promises.rewriting("r", "A", "B");
  promises.rewriteFailed("r", "B");
  assert.equal(promises.extend("r", "h", "B", T0 + 56_000), undefined);
  assert.equal(promises.extend("r", "h", "A", T0 + 56_000)?.expiresAt, T0 + 66_000);
});

test("a rewrite noted for a version that is no longer ours is ignored", () => {
  const promises = new PromisedExpiries();
  // Written at T0, last renewed at +50 s: promised until +60 s.
  promises.wrote("A", onDisk(T0 + 70_000), T0 + 60_000);
  promises.rewriting("r", "stale", "B");
  assert.equal(promises.extend("r", "h", "B", T0 + 56_000), undefined);
});

test("the horizon is the promise + 1 s, never beyond the maximum ttl past now", () => {
  assert.equal(horizonFor(T0, 10_000), T0 + 11_000);
  assert.equal(horizonFor(T0, 1_000), T0 + 2_000);
  assert.equal(horizonFor(T0, MAX_TTL_MS - 500), T0 + MAX_TTL_MS);
  assert.equal(horizonFor(T0, MAX_TTL_MS), T0 + MAX_TTL_MS, "the promise itself at the cap");
});

test("a background rewrite falls due once less than half the headroom is left", () => {
  const promises = new PromisedExpiries();
  promises.wrote("A", onDisk(T0 + 11_000), T0 + 10_000);
  assert.ok(promises.extend("r", "h", "A", T0 + 400));
  assert.equal(promises.dueForRefresh("r", "h", T0 + 400), undefined, "600 ms of headroom left");
  assert.ok(promises.extend("r", "h", "A", T0 + 600));
  assert.ok(promises.dueForRefresh("r", "h", T0 + 600), "400 ms left");
  assert.equal(promises.dueForRefresh("r", "other", T0 + 600), undefined, "another lease's");
});
