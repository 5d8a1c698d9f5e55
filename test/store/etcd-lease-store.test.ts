import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { systemClock } from "../../src/core/clock.ts";
import { LockManager, type GrantedLease } from "../../src/core/lock-manager.ts";
import type { TxnRequest, TxnResponse } from "../../src/gen/etcd/etcdserverpb/rpc.ts";
import { EtcdClient } from "../../src/store/etcd/etcd-client.ts";
import { EtcdLeaseStore } from "../../src/store/etcd/etcd-lease-store.ts";
import { EtcdKeyLayout } from "../../src/store/etcd/etcd-keys.ts";
import { KeyMirror } from "../../src/store/etcd/key-mirror.ts";
import { startEtcdCluster, type EtcdCluster } from "../helpers/etcd-cluster.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";

// Two replicas in one process (each its own etcd connection, store and
// manager) on one real etcd: what the shared queue, the lookup and the
// counter promise across replicas. The multi-process and failure cases are in
// test/grpc/etcd-cluster.test.ts.

interface Replica {
  manager: LockManager;
  store: EtcdLeaseStore;
  client: AnswerLosingClient;
}

const REPLICA_PROCESS = fileURLToPath(new URL("./etcd-waiting-replica.js", import.meta.url));

let cluster: EtcdCluster;
let prefixes = 0;

/**
 * A real client whose next Txns matching `lose` are applied by etcd but answered
 * with the error a dropped connection gives (UNAVAILABLE, "Connection dropped"):
 * the store cannot know whether they landed.
 */
class AnswerLosingClient extends EtcdClient {
  lose: ((request: TxnRequest) => boolean) | undefined;
  lost = 0;

  override async txn(request: TxnRequest, control?: Parameters<EtcdClient["txn"]>[1]): Promise<TxnResponse> {
    const response = await super.txn(request, control);
    if (this.lose?.(request)) {
      this.lose = undefined;
      this.lost++;
      throw Object.assign(new Error("14 UNAVAILABLE: Connection dropped"), { code: 14, details: "Connection dropped" });
    }
    return response;
  }
}

const deletesHolder = (request: TxnRequest) => request.success.some((op) => op.requestDeleteRange?.key.toString().endsWith("/h"));
const putsHolder = (request: TxnRequest) => request.success.some((op) => op.requestPut?.key.toString().endsWith("/h"));

async function replicas(count: number, options: { tokenFloor?: number } = {}): Promise<Replica[]> {
  const prefix = `/test-${process.pid}-${++prefixes}/`;
  const started: Replica[] = [];
  for (let i = 0; i < count; i++) {
    const client = new AnswerLosingClient({ endpoints: cluster.clientUrls });
    const store = new EtcdLeaseStore({ client, prefix, clock: systemClock, tokenFloor: options.tokenFloor });
    const manager = new LockManager({ store, clock: systemClock });
    await manager.start();
    started.push({ manager, store, client });
  }
  return started;
}

/** etcd's own count of LeaseKeepAlive messages received (every member). */
async function keepAlivesReceived(): Promise<number> {
  let total = 0;
  for (const url of cluster.clientUrls) {
    const text = await (await fetch(`${url}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith("grpc_server_msg_received_total") && l.includes('grpc_method="LeaseKeepAlive"'));
    total += Number(line?.split(" ").pop() ?? 0);
  }
  return total;
}

function close(all: Replica[]): void {
  for (const { manager, client } of all) {
    manager.close();
    client.close();
  }
}

describe("etcd lease store", { timeout: 60_000 }, () => {
  before(async () => {
    cluster = await startEtcdCluster(1);
  });
  after(() => cluster?.close());

  test("a lease granted through one replica is held for the other, renewed and released through it", async () => {
    const all = await replicas(2);
    const [a, b] = all;
    try {
      const granted = await a!.manager.acquire({ resource: "r", holder: "h1", ttlMs: 5_000 });
      await assert.rejects(b!.manager.acquire({ resource: "r", holder: "h2", ttlMs: 5_000 }), { name: "ResourceBusyError" });
      const renewed = await b!.manager.renew(granted.leaseId);
      assert.equal(renewed.fencingToken, granted.lease.fencingToken);
      assert.ok(renewed.expiresAt >= granted.lease.expiresAt);
      const listed = await b!.manager.list();
      assert.deepEqual(listed.map(({ state }) => state.resource), ["r"]);
      await b!.manager.release(granted.leaseId);
      await assert.rejects(a!.manager.renew(granted.leaseId), { name: "LeaseNotFoundError" });
      const next = await b!.manager.acquire({ resource: "r", holder: "h2", ttlMs: 5_000 });
      assert.ok(next.lease.fencingToken > granted.lease.fencingToken);
      await a!.manager.release(next.leaseId);
    } finally {
      close(all);
    }
  });

  test("acquire+release cycles reuse a spare etcd lease without renewing it each time (it was renewed under half a second ago)", async () => {
    const all = await replicas(1);
    const [a] = all;
    try {
      // The first cycle takes a new etcd lease; its release puts it back in the pool, still fresh.
      await a!.manager.release((await a!.manager.acquire({ resource: "cycle", holder: "h", ttlMs: 5_000 })).leaseId);
      const before = await keepAlivesReceived();
      let last: GrantedLease | undefined;
      for (let i = 0; i < 30; i++) {
        last = await a!.manager.acquire({ resource: "cycle", holder: "h", ttlMs: 5_000 });
        await a!.manager.release(last.leaseId);
      }
      const sent = (await keepAlivesReceived()) - before;
      // Before: one per cycle (30). Now only the replica's session and pool timers renew, a few times a second.
      assert.ok(sent <= 6, `${sent} keepalives for 30 cycles`);
      assert.ok(last!.lease.fencingToken >= 31);
    } finally {
      close(all);
    }
  });

  test("a release, hand-over or force-release whose write landed but lost its answer is reported done, not 'lease not found'", async () => {
    const all = await replicas(1);
    const [a] = all;
    try {
      // Release: the holder key's delete lands; its answer is lost; deciding again finds the version it deleted gone.
      const held = await a!.manager.acquire({ resource: "lost", holder: "h", ttlMs: 5_000 });
      a!.client.lose = deletesHolder;
      await a!.manager.release(held.leaseId);
      assert.equal(a!.client.lost, 1);
      assert.equal((await a!.store.read("lost")).kind, "free");

      // Hand-over to a waiter on the same replica: the Txn that makes it the holder lands; its answer is lost.
      const first = await a!.manager.acquire({ resource: "lost", holder: "h1", ttlMs: 5_000 });
      const waiting = a!.manager.acquire({ resource: "lost", holder: "h2", ttlMs: 5_000, waitMs: 10_000 });
      await waitFor(() => a!.store.queuedCount("lost") === 1, "the waiter queued", 5_000);
      a!.client.lose = putsHolder;
      await a!.manager.release(first.leaseId);
      assert.equal(a!.client.lost, 2);
      const second = await withTimeout(waiting, 5_000, "the waiter's grant");
      assert.ok(second.lease.fencingToken > first.lease.fencingToken);
      const state = await a!.store.read("lost");
      assert.equal(state.kind === "held" && state.lease.leaseIdHash, second.lease.leaseIdHash);

      // An operator's ForceRelease likewise reports what it removed.
      a!.client.lose = deletesHolder;
      const forced = await a!.manager.forceRelease("lost", "operator", "test");
      assert.equal(a!.client.lost, 3);
      assert.equal(forced.removed?.kind === "held" && forced.removed.lease.fencingToken, second.lease.fencingToken);
      assert.equal((await a!.store.read("lost")).kind, "free");
    } finally {
      close(all);
    }
  });

  test("waiters on both replicas are granted in the order they arrived, each with a higher token", async () => {
    const all = await replicas(2);
    const [a, b] = all;
    try {
      const first = await a!.manager.acquire({ resource: "fifo", holder: "holder", ttlMs: 10_000 });
      const order: string[] = [];
      const waits: Array<Promise<GrantedLease>> = [];
      const arrivals: Array<[Replica, string]> = [
        [b!, "b1"],
        [a!, "a1"],
        [b!, "b2"],
        [a!, "a2"],
      ];
      for (const [replica, name] of arrivals) {
        const wait = replica.manager.acquire({ resource: "fifo", holder: name, ttlMs: 10_000, waitMs: 30_000 });
        waits.push(
          wait.then(async (granted) => {
            order.push(name);
            await replica.manager.release(granted.leaseId);
            return granted;
          }),
        );
        // Each has its place before the next arrives.
        const queued = waits.length;
        await waitFor(() => a!.store.queuedCount("fifo") === queued && b!.store.queuedCount("fifo") === queued, `${queued} queued on both replicas`, 5_000);
      }
      await a!.manager.release(first.leaseId);
      const granted = await withTimeout(Promise.all(waits), 10_000, "every waiter granted");
      assert.deepEqual(order, ["b1", "a1", "b2", "a2"]);
      const tokens = [first, ...granted].map((g) => g.lease.fencingToken);
      for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, `tokens increase: ${tokens.join(", ")}`);
    } finally {
      close(all);
    }
  });

  test("a waiter that left is never granted, and its place goes", async () => {
    const all = await replicas(2);
    const [a, b] = all;
    try {
      const held = await a!.manager.acquire({ resource: "gone", holder: "holder", ttlMs: 10_000 });
      const leaving = new AbortController();
      const left = b!.manager.acquire({ resource: "gone", holder: "leaves", ttlMs: 10_000, waitMs: 30_000 }, leaving.signal);
      await waitFor(() => a!.store.queuedCount("gone") === 1, "1 queued", 5_000);
      const stays = a!.manager.acquire({ resource: "gone", holder: "stays", ttlMs: 10_000, waitMs: 30_000 });
      await waitFor(() => b!.store.queuedCount("gone") === 2, "2 queued", 5_000);
      leaving.abort();
      await assert.rejects(left, { name: "WaitCancelledError" });
      await waitFor(() => a!.store.queuedCount("gone") === 1, "1 queued", 5_000);
      await a!.manager.release(held.leaseId);
      const granted = await withTimeout(stays, 5_000, "the waiter that stayed");
      assert.equal(granted.lease.holder, "stays");
      await a!.manager.release(granted.leaseId);
    } finally {
      close(all);
    }
  });

  test("the waiters of a replica that was SIGKILLed lose their places within its session's ttl; they are never granted", async () => {
    const all = await replicas(1);
    const [a] = all;
    const prefix = `/test-${process.pid}-${prefixes}/`;
    const child = spawn(process.execPath, [REPLICA_PROCESS, cluster.clientUrls.join(","), prefix, "dies"], { stdio: ["ignore", "pipe", "inherit"] });
    let said = "";
    child.stdout.on("data", (chunk: Buffer) => (said += chunk.toString()));
    try {
      const held = await a!.manager.acquire({ resource: "dies", holder: "holder", ttlMs: 10_000 });
      await waitFor(() => said.includes("waiting"), "the other replica's waiter", 10_000);
      await waitFor(() => a!.store.queuedCount("dies") === 1, "1 queued", 5_000);
      const behind = a!.manager.acquire({ resource: "dies", holder: "behind", ttlMs: 10_000, waitMs: 30_000 });
      await waitFor(() => a!.store.queuedCount("dies") === 2, "2 queued", 5_000);
      child.kill("SIGKILL");
      await once(child, "exit");
      await a!.manager.release(held.leaseId);
      const granted = await withTimeout(behind, 10_000, "the waiter behind the dead one");
      assert.equal(granted.lease.holder, "behind");
      await waitFor(() => a!.store.queuedCount("dies") === 0, "the queue empty", 5_000);
      assert.doesNotMatch(said, /granted/);
    } finally {
      child.kill("SIGKILL");
      close(all);
    }
  });

  test("tokens start above --etcd-token-floor", async () => {
    const all = await replicas(1, { tokenFloor: 1_000 });
    try {
      const granted = await all[0]!.manager.acquire({ resource: "floor", holder: "h", ttlMs: 5_000 });
      assert.equal(granted.lease.fencingToken, 1_001);
    } finally {
      close(all);
    }
  });

  test("an expired lease is reclaimed and the next caller granted", async () => {
    const all = await replicas(2);
    const [a, b] = all;
    try {
      const short = await a!.manager.acquire({ resource: "short", holder: "h", ttlMs: 1_000 });
      const next = await withTimeout(b!.manager.acquire({ resource: "short", holder: "next", ttlMs: 5_000, waitMs: 10_000 }), 8_000, "granted after expiry");
      assert.ok(next.lease.fencingToken > short.lease.fencingToken);
      assert.ok(Date.now() >= short.lease.expiresAt);
    } finally {
      close(all);
    }
  });

  test("a watch whose start revision was compacted: the replica lists again, says everything may have changed, and follows on", async () => {
    const prefix = `/test-${process.pid}-${++prefixes}/`;
    const layout = new EtcdKeyLayout(prefix);
    const client = new EtcdClient({ endpoints: cluster.clientUrls });
    const key = (name: string) => Buffer.from(`${prefix}r/${name}/t`);
    await client.put({ key: key("before"), value: Buffer.from("1") });
    const { header } = await client.put({ key: key("before"), value: Buffer.from("2") });
    await client.compact({ revision: header!.revision });
    // The first listing answers as of revision 1 (a listing that took long, or a replica that was away):
    // its watch then starts on a compacted revision.
    let listings = 0;
    const stale = new Proxy(client, {
      get(target, property) {
        if (property !== "range") return Reflect.get(target, property, target).bind?.(target) ?? Reflect.get(target, property, target);
        return async (...args: Parameters<EtcdClient["range"]>) => {
          const response = await target.range(...args);
          return ++listings === 1 ? { ...response, header: { ...response.header!, revision: 1n } } : response;
        };
      },
    });
    const changes: Array<string | undefined> = [];
    const warnings: string[] = [];
    const mirror = new KeyMirror(stale, layout, (resource) => changes.push(resource), (message) => warnings.push(message));
    try {
      await mirror.start();
      await waitFor(() => changes.includes(undefined), "the re-listing's change", 5_000);
      assert.ok(listings >= 2);
      assert.match(warnings.join("\n"), /compacted/);
      assert.equal(mirror.get("before")?.counter?.value.toString(), "2");
      const { header: after } = await client.put({ key: key("after"), value: Buffer.from("7") });
      await mirror.reach(after!.revision);
      assert.equal(mirror.get("after")?.counter?.value.toString(), "7");
      assert.ok(changes.includes("after"));
    } finally {
      mirror.close();
      client.close();
    }
  });

  test("a replica started while etcd is down serves once etcd is up (UNAVAILABLE until then)", async () => {
    const member = cluster.members[0]!;
    await member.kill();
    const logged: string[] = [];
    const client = new EtcdClient({ endpoints: cluster.clientUrls });
    const store = new EtcdLeaseStore({ client, prefix: `/test-${process.pid}-${++prefixes}/`, clock: systemClock });
    const manager = new LockManager({ store, clock: systemClock, log: (message) => logged.push(message) });
    try {
      await manager.start();
      assert.match(logged.join("\n"), /store not usable yet/);
      await assert.rejects(manager.acquire({ resource: "late", holder: "h", ttlMs: 5_000 }), { name: "StoreUnavailableError" });
      await member.restart();
      let granted: GrantedLease | undefined;
      await waitFor(async () => (granted = await manager.acquire({ resource: "late", holder: "h", ttlMs: 5_000 }).catch(() => undefined)) !== undefined, "a grant once etcd is up", 15_000, 100);
      assert.equal(granted!.lease.holder, "h");
      assert.deepEqual((await manager.list()).map(({ state }) => state.resource), ["late"]);
    } finally {
      manager.close();
      client.close();
    }
  });
});
