// The core's lock events: how a change of a resource's state is classified
// (transitionEvents), and what the LockManager emits, over real lease files
// and a manual clock: exactly one event per grant, release, expiry and
// hand-over, waiter counts without phantom waiters, a snapshot that matches,
// and never a lease id or its hash.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { LeaseRecord, ResourceState } from "../../src/core/lease.ts";
import { transitionEvents, validatePrefix, type LockEvent } from "../../src/core/lock-events.ts";
import { LockManager } from "../../src/core/lock-manager.ts";
import { InvalidArgumentError } from "../../src/core/errors.ts";
import { LeaseFileStore } from "../../src/store/lease-file-store.ts";
import { ManualClock, settle } from "../helpers/manual-clock.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

const NOW = 1_800_000_000_000;

function held(overrides: Partial<LeaseRecord> = {}): ResourceState & { kind: "held" } {
  const lease: LeaseRecord = {
    resource: "r",
    holder: "alice",
    fencingToken: 5,
    acquiredAt: NOW - 10_000,
    expiresAt: NOW + 20_000,
    ttlMs: 30_000,
    metadata: {},
    leaseIdHash: "secret-hash",
    pid: 1,
    hostname: "h",
    ...overrides,
  };
  return { kind: "held", resource: "r", lease };
}
const free: ResourceState = { kind: "free", resource: "r" };
const types = (events: LockEvent[]) => events.map((event) => event.type);

test("transitionEvents classifies each change of state", () => {
  assert.deepEqual(types(transitionEvents(undefined, held(), NOW, 0)), ["ACQUIRED"]);
  assert.deepEqual(types(transitionEvents(undefined, free, NOW, 0)), []);
  assert.deepEqual(types(transitionEvents(held(), free, NOW, 0)), ["RELEASED"]);
  assert.deepEqual(types(transitionEvents(held({ expiresAt: NOW }), free, NOW, 0)), ["EXPIRED"]);
  assert.deepEqual(types(transitionEvents(held(), held({ expiresAt: NOW + 30_000 }), NOW, 0)), ["RENEWED"]);
  assert.deepEqual(types(transitionEvents(held(), held(), NOW, 0)), [], "the same lease, unchanged: nothing");
  const handedOver = transitionEvents(held(), held({ holder: "bob", fencingToken: 6, acquiredAt: NOW }), NOW, 2);
  assert.deepEqual(types(handedOver), ["HANDED_OVER"]);
  assert.deepEqual(handedOver[0]!.previous, { holder: "alice", fencingToken: 5, acquiredAt: NOW - 10_000 });
  assert.equal(handedOver[0]!.holder, "bob");
  assert.equal(handedOver[0]!.waiters, 2);
  assert.deepEqual(
    types(transitionEvents(held({ expiresAt: NOW - 1 }), held({ holder: "bob", fencingToken: 6, acquiredAt: NOW }), NOW, 0)),
    ["EXPIRED", "ACQUIRED"],
    "an expired lease replaced by a new one",
  );
  const unreadable: ResourceState = { kind: "unreadable", resource: "r", modifiedAt: NOW - 1_000, blockedUntil: NOW + 3_599_000, reason: "bad json" };
  const appeared = transitionEvents(undefined, unreadable, NOW, 0);
  assert.deepEqual(
    { type: appeared[0]!.type, state: appeared[0]!.state, holder: appeared[0]!.holder, token: appeared[0]!.fencingToken },
    { type: "ACQUIRED", state: "unreadable", holder: "unknown", token: 0 },
  );
  const released = transitionEvents(held(), free, NOW, 1)[0]!;
  assert.deepEqual(
    { state: released.state, holder: released.holder, token: released.fencingToken, acquiredAt: released.acquiredAt, waiters: released.waiters },
    { state: "free", holder: "alice", token: 5, acquiredAt: NOW - 10_000, waiters: 1 },
    "an ending event describes the lease that ended",
  );
  assert.ok(!JSON.stringify([handedOver, released]).includes("secret-hash"), "no lease id hash in events");
});

test("validatePrefix accepts partial names and names the field when it refuses", () => {
  assert.equal(validatePrefix(""), "");
  assert.equal(validatePrefix("deploy-"), "deploy-");
  assert.equal(validatePrefix(".hidden"), ".hidden");
  assert.throws(() => validatePrefix("a/b"), (err: unknown) => err instanceof InvalidArgumentError && err.field === "resource_prefix");
  assert.throws(() => validatePrefix("x".repeat(129)), /resource_prefix: is 129 characters; the limit is 128/);
});

async function setup(t: TestContext): Promise<{ manager: LockManager; clock: ManualClock; events: LockEvent[] }> {
  const temp = await makeTempDir();
  const clock = new ManualClock();
  const manager = new LockManager({ store: new LeaseFileStore({ dir: join(temp.path, "locks"), clock }), clock });
  await manager.start();
  const events: LockEvent[] = [];
  const unsubscribe = manager.subscribe((event) => events.push(event));
  t.after(async () => {
    unsubscribe();
    manager.close();
    await settle();
    await temp.remove();
  });
  return { manager, clock, events };
}

test("the manager emits one event per grant, wait, hand-over, release and expiry, with no phantom waiters", async (t) => {
  const { manager, clock, events } = await setup(t);
  const summary = () => events.map((event) => `${event.type} ${event.resource} ${event.holder} w${event.waiters}`);

  const a = await manager.acquire({ resource: "gw", holder: "a", ttlMs: 10_000 });
  assert.deepEqual(summary(), ["ACQUIRED gw a w0"], "an uncontended grant: no waiter ever shows");

  const b = manager.acquire({ resource: "gw", holder: "b", ttlMs: 10_000, waitMs: 60_000 });
  await settle();
  assert.deepEqual(summary().slice(1), ["WAITERS_CHANGED gw a w1"]);
  assert.deepEqual(
    manager.snapshot().map((event) => `${event.type} ${event.resource} ${event.holder} w${event.waiters}`),
    ["HELD gw a w1"],
    "the snapshot agrees with the events",
  );

  await manager.release(a.leaseId);
  const granted = await b;
  await settle();
  assert.deepEqual(summary().slice(2), ["HANDED_OVER gw b w0"], "the waiter that got the lease is no longer counted");
  assert.equal(events[2]!.previous?.holder, "a");

  await manager.renew(granted.leaseId);
  await clock.advance(1_000);
  await manager.renew(granted.leaseId);
  assert.equal(events.at(-1)!.type, "RENEWED");

  await clock.advance(11_000); // b stops renewing: its lease runs out
  await settle();
  assert.equal(events.at(-1)!.type, "EXPIRED");
  assert.equal(events.at(-1)!.holder, "b");
  assert.equal(events.at(-1)!.state, "free");

  const c = await manager.acquire({ resource: "gw", holder: "c" });
  await manager.release(c.leaseId);
  assert.deepEqual(summary().slice(-2), ["ACQUIRED gw c w0", "RELEASED gw c w0"]);
  assert.deepEqual(manager.snapshot(), []);
  assert.equal(manager.waiterCount(), 0);
  for (const id of [a.leaseId, granted.leaseId, c.leaseId]) assert.ok(!JSON.stringify(events).includes(id));
});

test("a waiter that gives up is counted out; a listener that throws harms nobody", async (t) => {
  const { manager, events } = await setup(t);
  manager.subscribe(() => {
    throw new Error("a broken listener");
  });
  const a = await manager.acquire({ resource: "q", holder: "a" });
  const controller = new AbortController();
  const leaving = manager.acquire({ resource: "q", holder: "b", waitMs: 60_000 }, controller.signal);
  await settle();
  assert.equal(manager.waiterCount(), 1);
  controller.abort();
  await assert.rejects(leaving);
  assert.deepEqual(
    events.map((event) => `${event.type} w${event.waiters}`),
    ["ACQUIRED w0", "WAITERS_CHANGED w1", "WAITERS_CHANGED w0"],
  );
  assert.equal(manager.waiterCount(), 0);
  await manager.release(a.leaseId);
});
