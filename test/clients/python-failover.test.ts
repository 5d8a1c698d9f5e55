// The Python LockClient given several addresses (two `mcp-lockd serve`
// processes on one lock dir stand in for replicas): when the replica its
// KeepAlive stream uses is SIGKILLed, the stream moves to the other and
// renews with the same lease id; lease.lost is not set and nobody else is
// granted the lease. Calls move past an address that is down.

import { test } from "node:test";
import assert from "node:assert/strict";
import { LockClient, type Lock } from "../../src/index.ts";
import { deadAddress, startReplicas } from "../helpers/replicas.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";
import { PythonLeaseDriver } from "./python-lease-driver.ts";

test("python LockClient: the replica it renews through is SIGKILLed; the lease renews through the other, not lost, nobody else granted", async (t) => {
  const replicas = await startReplicas(2);
  const [a, b] = [replicas.services[0]!, replicas.services[1]!];
  const py = await PythonLeaseDriver.start("grpc", replicas.addressList);
  const observer = new LockClient({ address: b.grpcAddress });
  let contenderGrantedAt: number | undefined;
  let contender: Promise<Lock> | undefined;
  try {
    const TTL = 2;
    const granted = await py.ok({ op: "lock", id: "a", resource: "py-failover", ttl: TTL, holder: "py-survivor" });
    await withTimeout(py.nextRenewal(a.grpcAddress), 5_000, "a renewal through the first replica");
    contender = observer.acquire("py-failover", { ttl: 5_000, wait: 30_000, holder: "contender" });
    void contender.then(() => (contenderGrantedAt = Date.now()), () => {});
    await waitFor(async () => (await observer.list("py-failover"))[0]?.waiters === 1, "the contender waiting on the second replica");

    const elsewhere = py.nextRenewal(b.grpcAddress);
    const killedAt = Date.now();
    await a.stop("SIGKILL");
    const first = await withTimeout(elsewhere, TTL * 1000, "the first renewal through the second replica");
    // Renewals go on past the expiry the lease had when its replica died.
    await withTimeout(
      (async () => {
        while ((await py.nextRenewal(b.grpcAddress)).at <= killedAt + TTL * 1000 + 100);
      })(),
      4 * TTL * 1000,
      "renewals past the ttl",
    );

    const state = await py.ok({ op: "state", id: "a" });
    assert.equal(state.lost, false, JSON.stringify(state));
    assert.equal(py.lostSoFar("a"), undefined);
    assert.equal(state.streams_opened, 2, "one reconnection");
    assert.equal(contenderGrantedAt, undefined, "the contender was granted a held lease");
    const [listed] = await observer.list("py-failover");
    assert.equal(listed?.holder, "py-survivor");
    assert.equal(listed?.fencingToken, BigInt(granted.lease!.fencing_token), "the same lease, not a new grant");
    // The client's own calls moved to the live replica too.
    assert.equal((await py.ok({ op: "list", prefix: "py-failover" })).locks!.length, 1);

    const release = await py.ok({ op: "release", id: "a" });
    const next = await withTimeout(contender, 5_000, "the contender's grant after the release");
    assert.ok(contenderGrantedAt! >= release.started!, "granted before the release");
    assert.ok(next.fencingToken > BigInt(granted.lease!.fencing_token));
    await next.release();
    t.diagnostic(`python: replica SIGKILL to the first renewal confirmed by the other replica: ${Math.round(first.at - killedAt)} ms (ttl ${TTL} s)`);
  } finally {
    await py.close();
    observer.close();
    await replicas.close();
  }
});

test("python LockClient: a caller waiting at a replica that is SIGKILLed goes on waiting at the next one, and is granted there", async () => {
  const replicas = await startReplicas(2);
  const [a, b] = [replicas.services[0]!, replicas.services[1]!];
  const holder = new LockClient({ address: b.grpcAddress });
  const onA = new LockClient({ address: a.grpcAddress });
  const py = await PythonLeaseDriver.start("grpc", replicas.addressList);
  try {
    const held = await holder.acquire("py-queued", { ttl: 5_000, holder: "first" });
    const waiting = py.call({ op: "lock", id: "w", resource: "py-queued", ttl: 5, wait: 20, holder: "second" });
    await waitFor(async () => (await onA.list("py-queued"))[0]?.waiters === 1, "the waiter queued at the first replica");
    await a.stop("SIGKILL");
    await waitFor(async () => (await holder.list("py-queued"))[0]?.waiters === 1, "the waiter queued at the second replica");
    await held.release();
    const granted = await withTimeout(waiting, 5_000, "the grant at the second replica");
    assert.equal(granted.ok, true, JSON.stringify(granted));
    assert.equal(granted.lease!.holder, "second");
    assert.ok(BigInt(granted.lease!.fencing_token) > held.fencingToken);
    await py.ok({ op: "release", id: "w" });
  } finally {
    await py.close();
    holder.close();
    onA.close();
    await replicas.close();
  }
});

test("python LockClient: calls move past an address that is down; with none up, UnavailableError; a bad list is refused", async () => {
  const replicas = await startReplicas(1);
  const up = replicas.services[0]!.grpcAddress;
  const down = [await deadAddress(), await deadAddress()];
  const py = await PythonLeaseDriver.start("grpc", `${down[0]}, ${up}`, { connect_timeout: 2 });
  const nowhere = await PythonLeaseDriver.start("grpc", down.join(","), { connect_timeout: 1 });
  try {
    const { lease } = await py.ok({ op: "lock", id: "a", resource: "past-the-dead", ttl: 5 });
    assert.deepEqual((await py.ok({ op: "list" })).locks!.map((l) => l.fencing_token), [lease!.fencing_token]);
    await py.ok({ op: "release", id: "a" });
    const started = Date.now();
    const failed = await nowhere.call({ op: "list" });
    assert.equal(failed.error, "UnavailableError", JSON.stringify(failed));
    assert.ok(Date.now() - started < 3_000, "connect_timeout bounds the whole list, not each address");
    assert.match(failed.message ?? "", new RegExp(down.join(",")));
  } finally {
    await py.close();
    await nowhere.close();
    await replicas.close();
  }
  for (const [bad, message] of [
    ["127.0.0.1:1,,127.0.0.1:2", /address 2 of 3 is empty/],
    ["127.0.0.1:1,127.0.0.1:1", /listed twice/],
    ["127.0.0.1:1,nohost", /expected HOST:PORT/],
  ] as const) {
    await assert.rejects(PythonLeaseDriver.start("grpc", bad), (err: Error) => /InvalidArgumentError/.test(err.message) && message.test(err.message), bad);
  }
});
