import { test } from "node:test";
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { InvalidArgumentError, LockClient, UnavailableError, type Lock } from "../../src/index.ts";
import { keepAliveDiagnostics } from "../../src/client/diagnostics.ts";
import { nextRenewal } from "../helpers/keep-alive-events.ts";
import { answerTimeoutMs } from "../../src/client/lease-keeper.ts";
import { deadAddress, startReplicas } from "../helpers/replicas.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";

// A LockClient given several addresses (replicas of one service: here two
// `mcp-lockd serve` processes on one lock dir) moves to the next when the one
// it uses dies or freezes. Its holder notices nothing: the KeepAlive stream
// reconnects to the other replica and renews with the same lease id, the
// loss signal does not fire, and nobody else is granted the lease meanwhile.

/** A contender on `address` waiting for `resource`; `grantedAt` is set (performance.now()) when it is granted. */
function contend(address: string, resource: string): { client: LockClient; granted: Promise<Lock>; grantedAt?: number } {
  const client = new LockClient({ address });
  const contender: { client: LockClient; granted: Promise<Lock>; grantedAt?: number } = {
    client,
    granted: client.acquire(resource, { ttl: 5_000, wait: 30_000, holder: "contender" }).then((lock) => {
      contender.grantedAt = performance.now();
      return lock;
    }),
  };
  return contender;
}

test("the replica a holder renews through is SIGKILLed: the lease renews through the other, no loss, nobody else granted", async (t) => {
  const replicas = await startReplicas(2);
  const [a, b] = replicas.services as [NonNullable<(typeof replicas.services)[0]>, NonNullable<(typeof replicas.services)[0]>];
  const client = new LockClient({ address: replicas.addressList });
  const observer = new LockClient({ address: b.grpcAddress });
  let contender: ReturnType<typeof contend> | undefined;
  try {
    const ttl = 2_000;
    const lock = await client.acquire("failover", { ttl, holder: "survivor" });
    await withTimeout(nextRenewal(client, "failover", a.grpcAddress), 5_000, "a renewal through the first replica");
    contender = contend(b.grpcAddress, "failover");
    await waitFor(async () => (await observer.list("failover"))[0]?.waiters === 1, "the contender waiting on the second replica");

    const killedAt = performance.now();
    const elsewhere = nextRenewal(client, "failover", b.grpcAddress);
    await a.stop("SIGKILL");
    const first = await withTimeout(elsewhere, ttl, "the first renewal through the second replica");
    // Renewals go on past the expiry the lease had when its replica died.
    await withTimeout(nextRenewal(client, "failover", b.grpcAddress, killedAt + ttl + 100), 3 * ttl, "renewals past the ttl after the kill");

    assert.equal(lock.signal.aborted, false, `lost: ${String(lock.signal.reason)}`);
    assert.equal(contender.grantedAt, undefined, "the contender was granted a held lease");
    const [listed] = await observer.list("failover");
    assert.equal(listed?.holder, "survivor");
    assert.equal(listed?.fencingToken, lock.fencingToken, "the same lease, not a new grant");
    const stats = client[keepAliveDiagnostics].stats;
    assert.equal(stats.streamsOpened, 2, "one reconnection");

    const releasedAt = performance.now();
    await lock.release();
    const next = await withTimeout(contender.granted, 5_000, "the contender's grant after the release");
    assert.ok(contender.grantedAt! >= releasedAt, "granted before the release");
    assert.ok(next.fencingToken > lock.fencingToken);
    await next.release();
    t.diagnostic(`replica SIGKILL to the first renewal confirmed by the other replica: ${(first.at - killedAt).toFixed(1)} ms (ttl ${ttl} ms)`);
  } finally {
    client.close();
    observer.close();
    contender?.client.close();
    await replicas.close();
  }
});

test("the replica a holder renews through freezes (SIGSTOP): after the answer timeout it renews through the other", async (t) => {
  const replicas = await startReplicas(2);
  const [a, b] = replicas.services as [NonNullable<(typeof replicas.services)[0]>, NonNullable<(typeof replicas.services)[0]>];
  const client = new LockClient({ address: replicas.addressList });
  const pid = a.child.pid!;
  try {
    const ttl = 3_000;
    const lock = await client.acquire("frozen-replica", { ttl, holder: "survivor" });
    await withTimeout(nextRenewal(client, "frozen-replica", a.grpcAddress), 5_000, "a renewal through the first replica");
    const frozenAt = performance.now();
    const elsewhere = nextRenewal(client, "frozen-replica", b.grpcAddress);
    process.kill(pid, "SIGSTOP");
    const first = await withTimeout(elsewhere, ttl, "a renewal through the second replica");
    // Sent a third of the ttl after the last one, then answerTimeoutMs without an answer.
    assert.ok(first.at - frozenAt <= ttl / 3 + answerTimeoutMs(ttl) + 500, `${first.at - frozenAt} ms`);
    await withTimeout(nextRenewal(client, "frozen-replica", b.grpcAddress, frozenAt + ttl + 100), 3 * ttl, "renewals past the ttl");
    assert.equal(lock.signal.aborted, false, `lost: ${String(lock.signal.reason)}`);
    t.diagnostic(`replica SIGSTOP to the first renewal confirmed by the other replica: ${(first.at - frozenAt).toFixed(0)} ms (ttl ${ttl} ms, answer timeout ${answerTimeoutMs(ttl)} ms)`);
    process.kill(pid, "SIGCONT");
    await lock.release();
  } finally {
    try {
      process.kill(pid, "SIGCONT");
    } catch {
      // already gone
    }
    client.close();
    await replicas.close();
  }
});

test("a caller waiting in the queue of a replica that is SIGKILLed goes on waiting at the next one, and is granted there", async (t) => {
  const replicas = await startReplicas(2);
  const [a, b] = [replicas.services[0]!, replicas.services[1]!];
  const holder = new LockClient({ address: b.grpcAddress });
  const waiter = new LockClient({ address: replicas.addressList });
  const onA = new LockClient({ address: a.grpcAddress });
  try {
    const held = await holder.acquire("queued", { ttl: 5_000, holder: "first" });
    const waiting = waiter.acquire("queued", { ttl: 5_000, wait: 20_000, holder: "second" });
    await waitFor(async () => (await onA.list("queued"))[0]?.waiters === 1, "the waiter queued at the first replica");
    const killedAt = performance.now();
    await a.stop("SIGKILL");
    await waitFor(async () => (await holder.list("queued"))[0]?.waiters === 1, "the waiter queued at the second replica");
    const requeuedAt = performance.now();
    await held.release();
    const lock = await withTimeout(waiting, 5_000, "the grant at the second replica");
    assert.equal(lock.holder, "second");
    assert.ok(lock.fencingToken > held.fencingToken);
    await withTimeout(nextRenewal(waiter, "queued", b.grpcAddress), 5_000, "a renewal through the second replica");
    await lock.release();
    t.diagnostic(`waiting caller re-queued at the other replica ${(requeuedAt - killedAt).toFixed(0)} ms after the SIGKILL (seen through polling every 20 ms)`);
  } finally {
    holder.close();
    waiter.close();
    onA.close();
    await replicas.close();
  }
});

test("calls move past an address that is down; with none up, UnavailableError names them all; a bad list is refused", async () => {
  const replicas = await startReplicas(1);
  const up = replicas.services[0]!.grpcAddress;
  const down = [await deadAddress(), await deadAddress()];
  const client = new LockClient({ address: `${down[0]},${up}` });
  const nowhere = new LockClient({ address: down.join(",") });
  try {
    const lock = await client.acquire("past-the-dead", { ttl: 5_000 });
    assert.deepEqual((await client.list("past-the-dead")).map((l) => l.fencingToken), [lock.fencingToken]);
    await lock.release();
    assert.deepEqual(await client.list("past-the-dead"), []);

    await assert.rejects(nowhere.list(), (err: unknown) => err instanceof UnavailableError && err.message.includes(`tried ${down.join(", ")}`));
    await assert.rejects(nowhere.acquire("x", { wait: 1_000 }), UnavailableError);
    assert.throws(() => new LockClient({ address: `${up},,${up}` }), (err: unknown) => err instanceof InvalidArgumentError && err.field === "address");
    assert.throws(() => new LockClient({ address: `${up},${up}` }), /listed twice/);
  } finally {
    client.close();
    nowhere.close();
    await replicas.close();
  }
});
