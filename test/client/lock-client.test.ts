import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { inspect } from "node:util";
import { unlink } from "node:fs/promises";
import { join } from "node:path";
import {
  InvalidArgumentError,
  LeaseLostError,
  Lock,
  LockClient,
  LockClientError,
  ResourceBusyError,
  UnavailableError,
} from "../../src/index.ts";
import { startServiceFixture, type ServiceFixture } from "../helpers/service-process.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";

// The client's API against a real service process.

let fixture: ServiceFixture;
const clients: LockClient[] = [];

function newClient(): LockClient {
  const client = new LockClient({ address: fixture.service.grpcAddress });
  clients.push(client);
  return client;
}

before(async () => {
  fixture = await startServiceFixture();
});

after(async () => {
  for (const client of clients) await client[Symbol.asyncDispose]();
  await fixture.close();
});

async function waiters(client: LockClient, resource: string): Promise<number> {
  return (await client.list(resource)).find((info) => info.resource === resource)?.waiters ?? 0;
}

test("acquire returns a Lock; release frees the resource; fencing tokens increase as bigints", async () => {
  const client = newClient();
  const first = await client.acquire("basic", { ttl: 5_000, metadata: { job: "test" } });
  assert.ok(first instanceof Lock);
  assert.equal(first.resource, "basic");
  assert.equal(first.holder, `${hostname()}:${process.pid}`, "the default holder names the host and pid");
  assert.equal(typeof first.fencingToken, "bigint");
  assert.equal(first.ttl, 5_000);
  assert.ok(first.expiresAt.getTime() > Date.now() && first.expiresAt.getTime() <= Date.now() + 5_000);
  assert.equal(first.signal.aborted, false);

  const [listed] = await client.list("basic");
  assert.ok(listed);
  assert.deepEqual(
    { resource: listed.resource, holder: listed.holder, fencingToken: listed.fencingToken, ttl: listed.ttl, state: listed.state, metadata: listed.metadata },
    { resource: "basic", holder: first.holder, fencingToken: first.fencingToken, ttl: 5_000, state: "held", metadata: { job: "test" } },
  );
  assert.ok(listed.acquiredAt instanceof Date && listed.expiresAt instanceof Date);
  assert.equal("leaseId" in listed, false, "listings carry no lease id");

  await first.release();
  await first.release(); // idempotent
  assert.deepEqual(await client.list("basic"), []);
  assert.equal(first.signal.aborted, false, "release is not a loss");

  const second = await client.acquire("basic");
  assert.ok(second.fencingToken > first.fencingToken);
  await second.release();
});

test("the lease id is a capability: not enumerable, not in JSON or inspect output", async () => {
  const client = newClient();
  const lock = await client.acquire("secret");
  try {
    assert.match(lock.leaseId, /^[A-Za-z0-9_-]{20,}$/);
    assert.equal(Object.keys(lock).includes("leaseId"), false);
    const json = JSON.stringify(lock);
    assert.equal(json.includes(lock.leaseId), false);
    assert.equal(JSON.parse(json).fencingToken, lock.fencingToken.toString(), "bigint token serialises as a string");
    const shown = inspect(lock, { depth: 5, showHidden: true });
    assert.equal(shown.includes(lock.leaseId), false, shown);
    assert.match(shown, /resource: 'secret'/);
  } finally {
    await lock.release();
  }
});

test("await using releases at the end of the block", async () => {
  const client = newClient();
  let token: bigint;
  {
    await using lock = await client.acquire("disposed");
    token = lock.fencingToken;
    assert.equal((await client.list("disposed")).length, 1);
  }
  assert.deepEqual(await client.list("disposed"), []);
  assert.ok(token > 0n);
});

test("withLock returns fn's value and releases; releases and rethrows when fn throws", async () => {
  const client = newClient();
  const value = await client.withLock("with", { ttl: 2_000 }, async (signal, lock) => {
    assert.equal(signal, lock.signal);
    assert.equal((await client.list("with")).length, 1);
    return 42;
  });
  assert.equal(value, 42);
  assert.deepEqual(await client.list("with"), []);

  const boom = new Error("boom");
  await assert.rejects(
    client.withLock("with", {}, async () => {
      throw boom;
    }),
    (err) => err === boom,
  );
  assert.deepEqual(await client.list("with"), [], "released after fn threw");
});

test("withLock rejects with LeaseLostError when the lease is lost while fn runs", async () => {
  const client = newClient();
  await assert.rejects(
    client.withLock("with-lost", { ttl: 3_000 }, async (signal) => {
      await unlink(join(fixture.lockDir, "with-lost.lock"));
      await withTimeout(new Promise((resolve) => signal.addEventListener("abort", resolve)), 5_000, "the loss signal");
      return "done anyway";
    }),
    (err) => err instanceof LeaseLostError && err.reason === "expired" && err.resource === "with-lost",
  );
});

test("busy: ResourceBusyError with the holder (non-ASCII too) and its expiry", async () => {
  const a = newClient();
  const b = newClient();
  const holder = "höłder-ä ✓";
  const lock = await a.acquire("busy", { holder, ttl: 10_000 });
  try {
    const err = await b.acquire("busy").then(
      () => assert.fail("acquired a held resource"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ResourceBusyError, String(err));
    assert.ok(err instanceof LockClientError);
    assert.equal(err.code, 10 /* ABORTED */);
    assert.equal(err.resource, "busy");
    assert.equal(err.holder, holder);
    assert.ok(err.expiresAt instanceof Date);
    // Service clock vs this clock: same machine, so close; the client's own view is never later.
    assert.ok(Math.abs(err.expiresAt.getTime() - lock.expiresAt.getTime()) < 1_000);
    assert.ok(err.expiresAt.getTime() >= lock.expiresAt.getTime());

    // A wait that runs out is ABORTED too, with the same details.
    const timedOut = await b.acquire("busy", { wait: 300 }).catch((e: unknown) => e);
    assert.ok(timedOut instanceof ResourceBusyError && timedOut.holder === holder, String(timedOut));
  } finally {
    await lock.release();
  }
});

test("invalid input: InvalidArgumentError naming the field, from the service or the client", async () => {
  const client = newClient();
  const cases: Array<[string, Parameters<LockClient["acquire"]>[1], string, RegExp]> = [
    ["bad name!", {}, "resource", /resource/],
    ["ok", { ttl: 500 }, "ttl", /1s to 3600s/],
    ["ok", { ttl: Number.NaN }, "ttl", /finite/],
    ["ok", { wait: -1 }, "wait", /non-negative/],
    ["ok", { holder: "x".repeat(300) }, "holder", /256/],
    ["ok", { metadata: { "bad key!": "v" } }, "metadata", /key/],
  ];
  for (const [resource, options, field, pattern] of cases) {
    const err = await client.acquire(resource, options).catch((e: unknown) => e);
    assert.ok(err instanceof InvalidArgumentError, `${field}: ${String(err)}`);
    assert.equal(err.field, field);
    assert.match(err.message, pattern);
    assert.equal(err.code, 3 /* INVALID_ARGUMENT */);
  }
  assert.deepEqual(await client.list("ok"), []);
});

test("unreachable service: UnavailableError", async () => {
  // Port 1 on loopback: nothing listens there.
  const client = new LockClient({ address: "127.0.0.1:1" });
  try {
    for (const call of [() => client.acquire("x"), () => client.list(), () => client.release("nope"), () => client.renew("nope")]) {
      const err = await call().catch((e: unknown) => e);
      assert.ok(err instanceof UnavailableError, String(err));
      assert.equal(err.code, 14 /* UNAVAILABLE */);
    }
  } finally {
    client.close();
  }
});

test("distinct error classes", () => {
  const errors = [
    new ResourceBusyError("m", "r", undefined, undefined),
    new LeaseLostError("r", "expired", "m"),
    new InvalidArgumentError("m"),
    new UnavailableError("m"),
  ];
  for (const [i, a] of errors.entries()) {
    assert.ok(a instanceof LockClientError);
    for (const [j, b] of errors.entries()) if (i !== j) assert.equal(a instanceof b.constructor, false);
  }
});

test("waiting: aborting the signal cancels the call and leaves the queue; the next waiter gets it", async () => {
  const holderClient = newClient();
  const waiting = newClient();
  const later = newClient();
  const held = await holderClient.acquire("queue", { ttl: 10_000 });

  const controller = new AbortController();
  const abandoned = waiting.acquire("queue", { wait: 30_000, signal: controller.signal });
  await waitFor(async () => (await waiters(holderClient, "queue")) === 1, "the first waiter to queue");
  const reason = new Error("user gave up");
  controller.abort(reason);
  await assert.rejects(abandoned, (err) => err === reason, "rejects with signal.reason");
  await waitFor(async () => (await waiters(holderClient, "queue")) === 0, "the aborted waiter to leave the queue");

  const next = later.acquire("queue", { wait: 30_000 });
  await waitFor(async () => (await waiters(holderClient, "queue")) === 1, "the second waiter to queue");
  await held.release();
  const granted = await withTimeout(next, 10_000, "the remaining waiter's grant");
  assert.ok(granted.fencingToken > held.fencingToken);
  assert.equal((await holderClient.list("queue"))[0]?.waiters, 0);
  await granted.release();

  // An already aborted signal never reaches the service.
  await assert.rejects(waiting.acquire("queue", { signal: AbortSignal.abort(reason) }), (err) => err === reason);
});

test("FIFO across two clients, with Infinity as the wait", async () => {
  const a = newClient();
  const b = newClient();
  const c = newClient();
  const first = await a.acquire("fifo");
  const order: string[] = [];
  const second = b.acquire("fifo", { wait: Infinity, holder: "b" }).then((lock) => (order.push("b"), lock));
  await waitFor(async () => (await waiters(a, "fifo")) === 1, "b to queue");
  const third = c.acquire("fifo", { wait: 60_000, holder: "c" }).then((lock) => (order.push("c"), lock));
  await waitFor(async () => (await waiters(a, "fifo")) === 2, "c to queue");

  await first.release();
  const lockB = await withTimeout(second, 10_000, "b's grant");
  assert.deepEqual(order, ["b"]);
  assert.equal((await a.list("fifo"))[0]?.holder, "b");
  await lockB.release();
  const lockC = await withTimeout(third, 10_000, "c's grant");
  assert.deepEqual(order, ["b", "c"]);
  assert.ok(first.fencingToken < lockB.fencingToken && lockB.fencingToken < lockC.fencingToken);
  await lockC.release();
});

test("release and renew by lease id, for scripts", async () => {
  const client = newClient();
  const script = newClient();
  const lock = await client.acquire("by-id", { ttl: 4_000 });
  const before = Date.now();
  const renewal = await script.renew(lock.leaseId);
  assert.equal(renewal.ttl, 4_000);
  assert.ok(renewal.expiresAt.getTime() >= before + 4_000 - 5 && renewal.expiresAt.getTime() <= Date.now() + 4_000);

  assert.equal(await script.release(lock.leaseId), true);
  assert.equal(await script.release(lock.leaseId), false, "a second release finds nothing");
  await assert.rejects(script.renew(lock.leaseId), (err) => err instanceof LeaseLostError && err.reason === "expired");
  // The owner finds out at its next renewal, and its release still resolves.
  const lost = await withTimeout(
    new Promise<unknown>((resolve) => lock.signal.addEventListener("abort", () => resolve(lock.signal.reason))),
    5_000,
    "the owner's loss signal",
  );
  assert.ok(lost instanceof LeaseLostError && lost.reason === "expired");
  await lock.release();
});

test("close() gives up held leases: their signals fire and the service releases them", async () => {
  const client = new LockClient({ address: fixture.service.grpcAddress });
  const observer = newClient();
  const lock = await client.acquire("closing", { ttl: 30_000 });
  client.close();
  assert.ok(lock.signal.aborted);
  assert.ok(lock.signal.reason instanceof LeaseLostError && lock.signal.reason.reason === "closed");
  await waitFor(async () => (await observer.list("closing")).length === 0, "the closed client's lease to be released");
  await lock.release(); // resolves
  await assert.rejects(client.acquire("closing"), (err) => err instanceof LockClientError && /closed/.test(err.message));
});

test("detach hands a lease over: no more renewals, closing the client keeps it, release by id ends it", async () => {
  const holderClient = new LockClient({ address: fixture.service.grpcAddress });
  const other = newClient();
  const lock = await holderClient.acquire("detached", { ttl: 10_000 });
  const leaseId = lock.leaseId;
  lock.detach();
  await lock[Symbol.asyncDispose](); // `await using` must leave a detached lease alone
  holderClient.close();
  assert.equal(lock.signal.aborted, false, "a detached lease is not reported lost");
  await assert.rejects(other.acquire("detached"), ResourceBusyError, "still held after its client closed");
  assert.equal(await other.release(leaseId), true, "the lease id still releases it");
  await (await other.acquire("detached")).release();
});

test("the address: the option, else MCP_LOCKD_ADDRESS, else 127.0.0.1:50051; an empty variable counts as unset", () => {
  const saved = process.env.MCP_LOCKD_ADDRESS;
  try {
    process.env.MCP_LOCKD_ADDRESS = "";
    const fallback = new LockClient();
    assert.equal(fallback.address, "127.0.0.1:50051");
    fallback.close();
    process.env.MCP_LOCKD_ADDRESS = "127.0.0.1:7001";
    const fromEnv = new LockClient();
    assert.equal(fromEnv.address, "127.0.0.1:7001");
    fromEnv.close();
    const given = new LockClient({ address: "127.0.0.1:7002" });
    assert.equal(given.address, "127.0.0.1:7002");
    given.close();
  } finally {
    if (saved === undefined) delete process.env.MCP_LOCKD_ADDRESS;
    else process.env.MCP_LOCKD_ADDRESS = saved;
  }
});
