// The thin etcd client (src/store/etcd/etcd-client.ts) against a real etcd
// (Debian's etcd-server, started by test/helpers/etcd-cluster.ts): KV and
// transactions, leases kept alive and expiring, a watch from the current
// revision + 1 notified within milliseconds, aborts, and failover when the
// member in use is SIGKILLed in a three-member cluster.
import { test } from "node:test";
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { Compare_CompareResult, Compare_CompareTarget, type WatchResponse } from "../../src/gen/etcd/etcdserverpb/rpc.ts";
import { Event_EventType } from "../../src/gen/etcd/mvccpb/kv.ts";
import { EtcdClient, EtcdConfigError, EtcdWatchCanceledError, parseEndpoints } from "../../src/store/etcd/etcd-client.ts";
import { isUnavailable } from "../../src/grpc/service-endpoints.ts";
import { clientTls, startEtcdCluster, type EtcdCluster, type EtcdMember } from "../helpers/etcd-cluster.ts";
import { withTimeout } from "../helpers/wait.ts";

const key = (text: string) => Buffer.from(text);

/** A create-if-absent transaction: put `k` unless it exists; else read it. */
function createIfAbsent(client: EtcdClient, k: string, value: string, lease = 0n, control?: { timeoutMs?: number }) {
  return client.txn({
    compare: [{ key: key(k), target: Compare_CompareTarget.CREATE, result: Compare_CompareResult.EQUAL, createRevision: 0n, rangeEnd: Buffer.alloc(0) }],
    success: [{ requestPut: { key: key(k), value: key(value), lease, prevKv: false, ignoreValue: false, ignoreLease: false } }],
    failure: [{ requestRange: { key: key(k), rangeEnd: Buffer.alloc(0), limit: 0n, revision: 0n, sortOrder: 0, sortTarget: 0, serializable: false, keysOnly: false, countOnly: false, minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n } }],
  }, control);
}

/** Collects a watch's responses into `seen` until aborted; resolves `created` once etcd confirmed it. */
function collect(client: EtcdClient, request: Parameters<EtcdClient["watch"]>[0], signal: AbortSignal, options: { checkEveryMs?: number } = {}) {
  const seen: Array<{ response: WatchResponse; at: number }> = [];
  let markCreated: () => void = () => {};
  const created = new Promise<void>((resolve) => (markCreated = resolve));
  const waiters: Array<() => void> = [];
  const done = (async () => {
    try {
      for await (const response of client.watch(request, { signal, ...options })) {
        if (response.created) markCreated();
        seen.push({ response, at: performance.now() });
        for (const wake of waiters.splice(0)) wake();
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    }
  })();
  done.catch(() => {}); // awaited by the test; a failed test must not add an unhandled rejection
  const events = () => seen.flatMap(({ response, at }) => response.events.map((event) => ({ event, at })));
  const until = async (count: number) => {
    while (events().length < count) await new Promise<void>((resolve) => waiters.push(resolve));
  };
  return { created, done, events, until };
}

/**
 * Renews lease `id` every `everyMs` over one LeaseKeepAlive stream until
 * `signal` aborts; records each answer (time and TTL) and the error that
 * ended it early, if any.
 */
function keepAlive(client: EtcdClient, id: bigint, everyMs: number, signal: AbortSignal, answerTimeoutMs?: number) {
  const answers: Array<{ at: number; ttl: bigint; id: bigint }> = [];
  const state: { answers: typeof answers; error: unknown; done: Promise<void> } = { answers, error: undefined, done: Promise.resolve() };
  async function* renewals(): AsyncGenerator<bigint> {
    while (!signal.aborted) {
      yield id;
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  }
  state.done = (async () => {
    for await (const response of client.leaseKeepAlive(renewals(), { signal, answerTimeoutMs })) {
      answers.push({ at: performance.now(), ttl: response.TTL, id: response.ID });
    }
  })().catch((err: unknown) => {
    if (!signal.aborted) state.error = err;
  });
  return state;
}

/**
 * A client whose first endpoint is a follower. Not the leader: killing it
 * would add an election, and etcd 3.4 lets a proposal forwarded to a dead
 * leader wait out its request timeout (5 s + 2 × the election timeout: 6 s
 * here, measured).
 */
async function followerFirst(cluster: EtcdCluster): Promise<{ member: EtcdMember; client: EtcdClient }> {
  const leader = await cluster.leader();
  const member = cluster.members.find((m) => m !== leader)!;
  return { member, client: new EtcdClient({ endpoints: [member, ...cluster.members.filter((m) => m !== member)].map((m) => m.clientUrl) }) };
}

async function waitUntil(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 20));
}

test("endpoints: http, https and bare HOST:PORT; TLS only with https; bad lists are refused with the entry named", () => {
  assert.deepEqual(parseEndpoints(["http://127.0.0.1:2379", "127.0.0.1:2380"], undefined), { addresses: ["127.0.0.1:2379", "127.0.0.1:2380"], secure: false });
  assert.deepEqual(parseEndpoints(["https://etcd-1:2379", "https://[::1]:2379/"], undefined), { addresses: ["etcd-1:2379", "[::1]:2379"], secure: true });
  assert.deepEqual(parseEndpoints(["etcd-1:2379"], { ca: Buffer.from("x") }), { addresses: ["etcd-1:2379"], secure: true });
  for (const [endpoints, tls, message] of [
    [[], undefined, /no etcd endpoint/],
    [["etcd-1"], undefined, /"etcd-1": expected/],
    [["unix:///x"], undefined, /expected http/],
    [["http://a:1", "https://b:2"], undefined, /mix http/],
    [["http://a:1"], { ca: Buffer.from("x") }, /use https/],
    [["https://a:1"], { cert: Buffer.from("x") }, /needs its key/],
    [["a:1", "http://a:1"], undefined, /listed twice/],
  ] as const) {
    assert.throws(() => parseEndpoints(endpoints, tls), (err: unknown) => err instanceof EtcdConfigError && message.test(err.message), JSON.stringify(endpoints));
  }
});

test("one member: put and range, a create-if-absent txn on create_revision, leases kept alive then expiring, a watch at revision + 1 within milliseconds, aborts", async (t) => {
  const cluster = await startEtcdCluster(1);
  const client = new EtcdClient({ endpoints: cluster.clientUrls });
  try {
    const put = await client.put({ key: key("/t/a"), value: key("1") });
    const got = await client.range({ key: key("/t/a") });
    assert.equal(got.kvs[0]?.value.toString(), "1");
    assert.equal(got.kvs[0]?.createRevision, put.header!.revision);

    // Only the first create wins; the loser reads the winner's key in the same round trip.
    const first = await createIfAbsent(client, "/t/lock", "first");
    const second = await createIfAbsent(client, "/t/lock", "second");
    assert.equal(first.succeeded, true);
    assert.equal(second.succeeded, false);
    assert.equal(second.responses[0]?.responseRange?.kvs[0]?.value.toString(), "first");
    assert.equal(second.responses[0]?.responseRange?.kvs[0]?.createRevision, first.header!.revision);

    // A lease: ids are int64 above 2^53 as often as not, so bigint end to end.
    const grant = await client.leaseGrant(1);
    assert.equal(typeof grant.ID, "bigint");
    assert.ok(grant.TTL >= 1n);
    await client.put({ key: key("/t/leased"), value: key("x"), lease: grant.ID });
    const renewals = new AbortController();
    const kept = keepAlive(client, grant.ID, 300, renewals.signal);
    await withTimeout(waitUntil(() => kept.answers.length >= 6 || kept.error !== undefined), 10_000, "six keepalive answers");
    renewals.abort();
    await kept.done;
    assert.equal(kept.error, undefined);
    assert.ok(kept.answers.every((answer) => answer.id === grant.ID));
    // Kept past its 1 s ttl.
    assert.ok(kept.answers.every(({ ttl }) => ttl >= 1n), `ttls ${kept.answers.map(({ ttl }) => ttl).join(", ")}`);
    assert.equal((await client.range({ key: key("/t/leased") })).kvs.length, 1);
    // Unrenewed, it expires (etcd revokes expired leases every 500 ms) and takes its key along.
    const revision = (await client.range({ key: key("/t/leased") })).header!.revision;
    const expiry = new AbortController();
    const watched = collect(client, { key: key("/t/leased"), startRevision: revision + 1n }, expiry.signal);
    await withTimeout(watched.until(1), 5_000, "the leased key's deletion");
    expiry.abort();
    await watched.done;
    assert.equal(watched.events()[0]?.event.type, Event_EventType.DELETE);
    assert.ok((await client.leaseTimeToLive(grant.ID)).TTL <= 0n);

    // A watch opened at the current revision + 1 is "synced": notified right after the apply.
    const now = (await client.range({ key: key("/t/w"), countOnly: true })).header!.revision;
    const stop = new AbortController();
    const watch = collect(client, { key: key("/t/w/"), rangeEnd: key("/t/w0"), startRevision: now + 1n }, stop.signal);
    await withTimeout(watch.created, 5_000, "the watch's creation");
    const lags: number[] = [];
    for (let i = 0; i < 20; i++) {
      const response = await client.put({ key: key(`/t/w/${i}`), value: key(String(i)) });
      const answeredAt = performance.now();
      await withTimeout(watch.until(i + 1), 2_000, `the event of put ${i}`);
      const event = watch.events()[i]!;
      assert.equal(event.event.kv?.modRevision, response.header!.revision);
      lags.push(Math.max(0, event.at - answeredAt));
    }
    stop.abort();
    await watch.done;
    lags.sort((a, b) => a - b);
    assert.ok(lags[10]! < 20, `median watch lag after the put's answer ${lags[10]} ms`);
    t.diagnostic(`watch at revision + 1: event after the put's answer p50 ${lags[10]!.toFixed(2)} ms, max ${lags[19]!.toFixed(2)} ms (20 puts)`);

    // Aborting rejects with the reason, for unary calls and streams alike.
    const aborted = new AbortController();
    aborted.abort(new Error("given up"));
    await assert.rejects(client.range({ key: key("/t/a") }, { signal: aborted.signal }), /given up/);
    const gate = new AbortController();
    const pending = (async () => {
      for await (const _ of client.watch({ key: key("/t/none"), startRevision: now + 1000n }, { signal: gate.signal }));
    })();
    gate.abort(new Error("watch abandoned"));
    await assert.rejects(pending, /watch abandoned/);

    // A watch on a compacted revision is cancelled by etcd with the oldest revision left.
    const latest = (await client.put({ key: key("/t/c"), value: key("x") })).header!.revision;
    await client.compact({ revision: latest, physical: true });
    await assert.rejects(
      (async () => {
        for await (const _ of client.watch({ key: key("/t/c"), startRevision: 1n }));
      })(),
      (err: unknown) => err instanceof EtcdWatchCanceledError && err.compactRevision === latest,
    );
  } finally {
    client.close();
    await cluster.close();
  }
});

test("three members: the member in use is SIGKILLed; calls, the watch and lease keepalive go on through the others", async (t) => {
  const cluster = await startEtcdCluster(3);
  const { member: first, client } = await followerFirst(cluster);
  try {
    assert.equal(client.currentEndpoint, first.endpoint);
    const start = (await client.put({ key: key("/f/0"), value: key("0") })).header!.revision;
    const stop = new AbortController();
    const watch = collect(client, { key: key("/f/"), rangeEnd: key("/f0"), startRevision: start }, stop.signal);
    const grant = await client.leaseGrant(2);
    const kept = keepAlive(client, grant.ID, 300, stop.signal);
    await withTimeout(watch.until(1), 5_000, "the first event");
    await withTimeout(waitUntil(() => kept.answers.length > 0), 5_000, "a keepalive answer");

    const killedAt = performance.now();
    await first.kill("SIGKILL");
    // Writes go on. A write sent just before the connection's end was noticed
    // fails (UNAVAILABLE "Connection dropped": it may have been applied, so it
    // is not sent again by itself), and the next call goes to another member.
    // The first is a Txn, which goes by the lean path (lean-unary.ts), not grpc-js: the same rules.
    try {
      await createIfAbsent(client, "/f/1", "1");
    } catch (err) {
      assert.ok(isUnavailable(err), String(err));
      assert.notEqual(client.currentEndpoint, first.endpoint);
      await createIfAbsent(client, "/f/1", "1");
    }
    assert.equal((await client.range({ key: key("/f/1") })).kvs[0]?.value.toString(), "1");
    const firstWriteAfter = performance.now() - killedAt;
    for (let i = 2; i <= 5; i++) await client.put({ key: key(`/f/${i}`), value: key(String(i)) });
    assert.notEqual(client.currentEndpoint, first.endpoint);
    await withTimeout(watch.until(6), 10_000, "every event, through another member");
    const revisions = watch.events().map(({ event }) => event.kv!.modRevision);
    assert.deepEqual(revisions, [...revisions].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), "in order");
    assert.equal(new Set(revisions).size, 6, `each event once: ${revisions.join(", ")}`);
    // The lease is renewed through another member and outlives its 2 s ttl counted from the kill.
    await withTimeout(
      waitUntil(() => kept.answers.some((k) => k.at > killedAt + 2_500 && k.ttl > 0n)),
      10_000,
      `keepalives past the ttl after the kill (${String(kept.error)})`,
    );
    const firstKeepAliveAfter = kept.answers.find((k) => k.at > killedAt)!.at - killedAt;
    assert.ok((await client.leaseTimeToLive(grant.ID)).TTL > 0n);
    stop.abort();
    await Promise.all([watch.done, kept.done]);
    assert.equal(kept.error, undefined);
    t.diagnostic(
      `member in use (a follower) SIGKILLed: first write through another member after ${firstWriteAfter.toFixed(0)} ms, ` +
        `first keepalive answer after ${firstKeepAliveAfter.toFixed(0)} ms`,
    );
  } finally {
    client.close();
    await cluster.close();
  }
});

test("TLS: with the CA and a client certificate the client talks to an etcd that requires them; without the certificate it cannot", async () => {
  const cluster = await startEtcdCluster(1, { tls: true });
  const tls = clientTls(cluster.certificates)!;
  const client = new EtcdClient({ endpoints: cluster.clientUrls, tls });
  const anonymous = new EtcdClient({ endpoints: cluster.clientUrls, tls: { ca: tls.ca } });
  try {
    assert.match(cluster.clientUrls[0]!, /^https:/);
    await client.put({ key: key("/tls"), value: key("yes") });
    assert.equal((await client.range({ key: key("/tls") })).kvs[0]?.value.toString(), "yes");
    await assert.rejects(anonymous.range({ key: key("/tls") }, { timeoutMs: 3_000 }), (err: unknown) => isUnavailable(err));
    // Txn (the lean path) over the same TLS, with and without the certificate.
    assert.equal((await createIfAbsent(client, "/tls-txn", "yes")).succeeded, true);
    await assert.rejects(createIfAbsent(anonymous, "/tls-txn", "no", 0n, { timeoutMs: 3_000 }), (err: unknown) => isUnavailable(err));
    assert.throws(() => new EtcdClient({ endpoints: [cluster.members[0]!.clientUrl.replace("https", "http")], tls }), /use https/);
  } finally {
    client.close();
    anonymous.close();
    await cluster.close();
  }
});

test("three members: the member in use freezes (SIGSTOP); a call times out and the next goes elsewhere, the watch and lease keepalive move on", async (t) => {
  const cluster = await startEtcdCluster(3);
  const { member: first, client } = await followerFirst(cluster);
  const stop = new AbortController();
  try {
    const start = (await client.put({ key: key("/z/0"), value: key("0") })).header!.revision;
    const watch = collect(client, { key: key("/z/"), rangeEnd: key("/z0"), startRevision: start }, stop.signal, { checkEveryMs: 200 });
    await withTimeout(watch.until(1), 5_000, "the first event");
    const grant = await client.leaseGrant(3);
    const kept = keepAlive(client, grant.ID, 200, stop.signal, 500);
    await withTimeout(waitUntil(() => kept.answers.length > 0), 5_000, "a keepalive answer");

    // The member in use now: a stream's check may have moved off the first one on a busy machine.
    const frozen = cluster.members.find((member) => member.endpoint === client.currentEndpoint) ?? first;
    frozen.pause();
    const frozenAt = performance.now();
    // A Txn (the lean path) to the frozen member times out like any call, and the next goes elsewhere.
    await assert.rejects(createIfAbsent(client, "/z/x", "x", 0n, { timeoutMs: 500 }), (err: unknown) => (err as { code?: number }).code === 4);
    assert.notEqual(client.currentEndpoint, frozen.endpoint, "the next call goes to another member");
    await client.put({ key: key("/z/1"), value: key("1") });
    await withTimeout(watch.until(2), 5_000, "the event through another member");
    await withTimeout(waitUntil(() => kept.answers.some(({ at, ttl }) => at > frozenAt && ttl > 0n)), 5_000, `a keepalive answer from another member (${String(kept.error)})`);
    const keepAliveMoved = kept.answers.find(({ at }) => at > frozenAt)!.at - frozenAt;
    const watchMoved = watch.events()[1]!.at - frozenAt;
    assert.equal(kept.error, undefined);
    stop.abort();
    await Promise.all([watch.done, kept.done]);
    t.diagnostic(`member in use SIGSTOPped: first keepalive answer from another member after ${keepAliveMoved.toFixed(0)} ms (answer timeout 500 ms), watch event after ${watchMoved.toFixed(0)} ms (incl. a 500 ms call timeout)`);
  } finally {
    stop.abort();
    client.close();
    await cluster.close();
  }
});
