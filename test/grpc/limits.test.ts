// Limits against the real service (waiters and streams on either store): each reached, RESOURCE_EXHAUSTED naming
// it, and the service still answering everyone else; malformed protobuf and
// over-long fields refused as INVALID_ARGUMENT on every LockService method.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Client, credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { LockServiceClient } from "../../src/gen/mcplockd/v1/lock.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { startServiceProcess, type ServiceProcess } from "../helpers/service-process.ts";
import { expectGrpcError, TestLockClient } from "../helpers/lock-client.ts";
import { startServiceUnderTest, storesUnderTest, type ServiceUnderTest } from "../helpers/service-under-test.ts";
import { waitFor } from "../helpers/wait.ts";

const seconds = (s: number) => ({ seconds: s, nanos: 0 });
const METHODS = ["Acquire", "Release", "ListLocks", "ForceRelease"] as const;

for (const kind of storesUnderTest()) describe(`limits (${kind} store)`, () => {
  let fixture: ServiceUnderTest | undefined;
  let client: TestLockClient;

  before(async () => {
    fixture = await startServiceUnderTest(kind, {
      extraArgs: ["--max-waiters-per-resource", "3", "--max-waiters", "5", "--max-keepalive-streams", "2"],
    });
    client = fixture.client;
  });

  after(() => fixture?.close());

  /** The service still grants, renews and lists for others. */
  async function assertServesOthers(resource: string): Promise<void> {
    const { lease } = await client.acquire({ resource, ttl: seconds(5) });
    assert.ok(lease);
    assert.ok((await client.listLocks(resource)).locks.length === 1);
    assert.deepEqual(await client.release(lease.leaseId), { released: true });
  }

  test("waiters per resource and in total", async () => {
    const { lease: a } = await client.acquire({ resource: "a", ttl: seconds(30) });
    const { lease: b } = await client.acquire({ resource: "b", ttl: seconds(30) });
    const cancel = new AbortController();
    const waiters = [..."aaabb"].map((resource) =>
      client.acquire({ resource, ttl: seconds(5), waitTimeout: seconds(60) }, { signal: cancel.signal }).catch((err: ServiceError) => err.code),
    );
    await waitFor(async () => (await client.listLocks()).locks.reduce((n, l) => n + l.waiters, 0) === 5, "five waiters");
    await expectGrpcError(client.acquire({ resource: "a", waitTimeout: seconds(5) }), status.RESOURCE_EXHAUSTED, ["max-waiters-per-resource", "(3)", '"a"']);
    await expectGrpcError(client.acquire({ resource: "c", waitTimeout: seconds(5) }), status.RESOURCE_EXHAUSTED, ["max-waiters ", "(5)"]);
    // Trying once never waits, so it is not limited: it is simply busy.
    await expectGrpcError(client.acquire({ resource: "a" }), status.ABORTED);
    await assertServesOthers("d");
    cancel.abort();
    assert.deepEqual(await Promise.all(waiters), Array(5).fill(status.CANCELLED));
    // The cancelled waiters no longer count.
    await waitFor(async () => (await client.listLocks()).locks.every((l) => l.waiters === 0), "the queues to empty");
    const late = client.acquire({ resource: "c", ttl: seconds(5), waitTimeout: seconds(5) });
    const { lease: c } = await late;
    await client.release(c!.leaseId);
    await client.release(a!.leaseId);
    await client.release(b!.leaseId);
  });

  test("KeepAlive streams in total", async () => {
    const { lease } = await client.acquire({ resource: "kept", ttl: seconds(30) });
    const [first, second] = [client.keepAlive(), client.keepAlive()];
    assert.equal((await first.renew(lease!.leaseId)).expired, false);
    assert.equal((await second.renew(lease!.leaseId)).expired, false);
    const third = client.keepAlive();
    third.call.write({ leaseId: lease!.leaseId });
    const refused = await third.ended;
    assert.equal(refused?.code, status.RESOURCE_EXHAUSTED);
    assert.match(refused!.details, /max-keepalive-streams \(2\)/);
    assert.equal((await first.renew(lease!.leaseId)).expired, false, "open streams carry on");
    await assertServesOthers("kept-other");
    second.end();
    await second.ended;
    const fourth = client.keepAlive();
    assert.equal((await fourth.renew(lease!.leaseId)).expired, false, "a stream may open once another closed");
    first.end();
    fourth.end();
    await client.release(lease!.leaseId);
  });

  test("a request over 64 KiB is refused before it is parsed", async () => {
    const metadata = { big: "x".repeat(70 * 1024) };
    await expectGrpcError(client.acquire({ resource: "big", metadata }), status.RESOURCE_EXHAUSTED, [/larger than max/i]);
    await assertServesOthers("after-big");
  });
});

test("connections in total: one over the limit is refused; the others carry on", async () => {
  const temp = await makeTempDir();
  const service = await startServiceProcess({ lockDir: temp.path, extraArgs: ["--max-connections", "2"] });
  // Each on a connection of its own (grpc-js would share one among equal clients).
  const own = () => new LockServiceClient(service.grpcAddress, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  const list = (client: LockServiceClient) =>
    new Promise((resolve, reject) => client.listLocks({ resourcePrefix: "" }, new Metadata(), { deadline: Date.now() + 3_000 }, (err, res) => (err ? reject(err) : resolve(res))));
  const [first, second, third] = [own(), own(), own()];
  try {
    await list(first);
    await list(second);
    await assert.rejects(list(third), (err: ServiceError) => err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED);
    await list(first);
    first.close();
    await waitFor(async () => {
      const next = own();
      const accepted = await list(next).then(() => true, () => false);
      next.close();
      return accepted;
    }, "a connection to be accepted once one closed");
  } finally {
    second.close();
    third.close();
    await service.stop();
    await temp.remove();
  }
});

test("leases per connection (no --auth-file): the limit counts held and waiting; other connections are not affected", async () => {
  const temp = await makeTempDir();
  const service = await startServiceProcess({ lockDir: temp.path, extraArgs: ["--max-leases-per-owner", "2"] });
  const own = () => new TestLockClient(service.grpcAddress, { channelOptions: { "grpc.use_local_subchannel_pool": 1 } });
  const [a, b] = [own(), own()];
  try {
    const { lease: first } = await a.acquire({ resource: "x1", ttl: seconds(30) });
    await a.acquire({ resource: "x2", ttl: seconds(30) });
    await expectGrpcError(a.acquire({ resource: "x3", ttl: seconds(30) }), status.RESOURCE_EXHAUSTED, ["max-leases-per-owner (2)", "connection"]);
    const { lease: other } = await b.acquire({ resource: "y1", ttl: seconds(30) });
    assert.ok(other, "another connection is not affected");
    await a.release(first!.leaseId);
    const { lease: third } = await a.acquire({ resource: "x3", ttl: seconds(30) });
    assert.ok(third, "a released lease no longer counts");
  } finally {
    a.close();
    b.close();
    await service.stop();
    await temp.remove();
  }
});

describe("malformed requests", () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let service: ServiceProcess;
  let client: TestLockClient;
  let raw: Client;

  before(async () => {
    temp = await makeTempDir();
    service = await startServiceProcess({ lockDir: temp.path });
    client = new TestLockClient(service.grpcAddress);
    raw = new Client(service.grpcAddress, credentials.createInsecure());
  });

  after(async () => {
    raw?.close();
    client?.close();
    await service?.stop();
    await temp?.remove();
  });

  const identity = (bytes: Buffer) => bytes;
  // Field 1, length-delimited, with a length longer than the message: no protobuf decoder accepts it.
  const UNDECODABLE = Buffer.from([0x0a, 0x7f, 0x41]);

  test("undecodable protobuf is INVALID_ARGUMENT on every method: LockService, health, reflection", async () => {
    for (const method of METHODS) {
      const details = await expectGrpcError(
        new Promise((resolve, reject) =>
          raw.makeUnaryRequest(`/mcplockd.v1.LockService/${method}`, identity, identity, UNDECODABLE, new Metadata(), {}, (err, res) => (err ? reject(err) : resolve(res))),
        ),
        status.INVALID_ARGUMENT,
        [/\brequest\b/, "protobuf"],
        method,
      );
      assert.ok(!details.includes("Error deserializing"), method);
    }
    for (const path of ["/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/List"]) {
      await expectGrpcError(
        new Promise((resolve, reject) =>
          raw.makeUnaryRequest(path, identity, identity, UNDECODABLE, new Metadata(), {}, (err, res) => (err ? reject(err) : resolve(res))),
        ),
        status.INVALID_ARGUMENT,
        [/\brequest\b/],
        path,
      );
    }
    const watch = raw.makeServerStreamRequest("/grpc.health.v1.Health/Watch", identity, identity, UNDECODABLE, new Metadata(), {});
    watch.on("data", () => {});
    assert.equal((await new Promise<ServiceError>((resolve) => watch.on("error", resolve))).code, status.INVALID_ARGUMENT, "Health/Watch");
    for (const path of ["/mcplockd.v1.LockService/KeepAlive", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"]) {
      const stream = raw.makeBidiStreamRequest(path, identity, identity, new Metadata(), {});
      const ended = new Promise<ServiceError>((resolve) => stream.on("error", resolve));
      stream.on("data", () => {});
      stream.write(UNDECODABLE);
      assert.equal((await ended).code, status.INVALID_ARGUMENT, path);
    }
    const { lease } = await client.acquire({ resource: "still-served", ttl: seconds(5) });
    await client.release(lease!.leaseId);
  });

  test("over-long lease ids and prefixes are INVALID_ARGUMENT, never echoed", async () => {
    const longId = "L".repeat(1_000);
    await expectGrpcError(client.release(longId), status.INVALID_ARGUMENT, ["lease_id", "128"]);
    await expectGrpcError(client.listLocks("p".repeat(300)), status.INVALID_ARGUMENT, ["resource_prefix", "128"]);
    const stream = client.keepAlive();
    let echoed = false;
    stream.call.on("data", () => (echoed = true));
    stream.call.write({ leaseId: longId });
    const ended = await stream.ended;
    assert.equal(ended?.code, status.INVALID_ARGUMENT);
    assert.match(ended!.details, /lease_id/);
    assert.ok(!ended!.details.includes(longId.slice(0, 200)), "the id is not echoed in the error");
    assert.equal(echoed, false, "no response carries the id back");
  });
});
