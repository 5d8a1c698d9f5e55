// PollingLockChangeSource on a manual clock: it lists only while someone is
// subscribed, never more than once a second, takes its baseline before
// subscribe() resolves, and reports changes of holder, token, waiters or
// presence, but not renewals (a later expiry).
import { test } from "node:test";
import assert from "node:assert/strict";
import type { LockInfo } from "../../src/client/index.ts";
import { PollingLockChangeSource } from "../../src/mcp/lock-change-source.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

function lock(resource: string, fencingToken: bigint, expiresAt: number, waiters = 0): LockInfo {
  return {
    resource,
    holder: `holder-of-${resource}`,
    fencingToken,
    acquiredAt: new Date(0),
    expiresAt: new Date(expiresAt),
    ttl: 30_000,
    waiters,
    state: "held",
    metadata: {},
  };
}

function fixture() {
  const clock = new ManualClock(0);
  let locks: LockInfo[] = [];
  const listedAt: number[] = [];
  const source = new PollingLockChangeSource(
    async () => {
      listedAt.push(clock.now());
      return locks;
    },
    { clock, intervalMs: 10 }, // asks for 10 ms: the floor is a second
  );
  return { clock, source, listedAt, set: (next: LockInfo[]) => (locks = next) };
}

test("lists nothing until subscribed, then at most once a second, and stops when the last subscriber leaves", async () => {
  const { clock, source, listedAt } = fixture();
  await clock.advance(5_000);
  assert.deepEqual(listedAt, []);
  const unsubscribe = await source.subscribe(() => {});
  assert.deepEqual(listedAt, [5_000], "the baseline is taken before subscribe resolves");
  await clock.advance(3_500);
  assert.deepEqual(listedAt, [5_000, 6_000, 7_000, 8_000]);
  unsubscribe();
  await clock.advance(10_000);
  assert.equal(listedAt.length, 4);
  source.close();
});

test("reports a new lock, a hand-over, a new waiter and a release, but not a renewal", async () => {
  const { clock, source, set } = fixture();
  let changes = 0;
  set([lock("a", 1n, 10_000)]);
  const unsubscribe = await source.subscribe(() => changes++);
  await clock.advance(1_000);
  assert.equal(changes, 0, "nothing changed yet");
  set([lock("a", 1n, 40_000)]); // renewed: only the expiry moved
  await clock.advance(1_000);
  assert.equal(changes, 0);
  set([lock("a", 1n, 40_000), lock("b", 7n, 40_000)]);
  await clock.advance(1_000);
  assert.equal(changes, 1);
  set([lock("a", 1n, 40_000, 1), lock("b", 7n, 40_000)]);
  await clock.advance(1_000);
  assert.equal(changes, 2);
  set([lock("a", 2n, 40_000), lock("b", 7n, 40_000)]); // handed over
  await clock.advance(1_000);
  assert.equal(changes, 3);
  set([lock("b", 7n, 40_000)]);
  await clock.advance(1_000);
  assert.equal(changes, 4);
  unsubscribe();
  source.close();
});

test("a failed listing is no change, and the next one compares with the last good one", async () => {
  const clock = new ManualClock(0);
  let fail = false;
  let locks = [lock("a", 1n, 1_000)];
  const source = new PollingLockChangeSource(
    async () => {
      if (fail) throw new Error("unavailable");
      return locks;
    },
    { clock },
  );
  let changes = 0;
  await source.subscribe(() => changes++);
  fail = true;
  await clock.advance(2_000);
  assert.equal(changes, 0);
  fail = false;
  locks = [];
  await clock.advance(1_000);
  assert.equal(changes, 1);
  source.close();
  await clock.advance(5_000);
  assert.equal(changes, 1);
});
