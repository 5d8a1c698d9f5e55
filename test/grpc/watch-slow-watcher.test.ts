// A watcher that stops reading never slows the service: past its queue limit
// its stream ends with RESOURCE_EXHAUSTED, while renewals keep being answered
// and a watcher that reads keeps getting every event. In-process service with
// a small limit, real gRPC on loopback, real lease files.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { startService, type RunningService } from "../../src/service.ts";
import { LockClient, UnavailableError } from "../../src/client/index.ts";
import type { LockEvent } from "../../src/gen/mcplockd/v1/lock.ts";
import { TestLockClient } from "../helpers/lock-client.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { EventReader } from "../helpers/event-reader.ts";
import { withTimeout } from "../helpers/wait.ts";

const QUEUE_LIMIT = 64;
/**
 * Leases renewed together, one renewal each per round: each renewal moves an
 * expiry, so each is an event; fewer than the limit, so a watcher that
 * reads keeps up with every burst.
 */
const LEASES = 20;
/** 2,000 events: a reader that stops is cut off after about 900 (gRPC's and the socket's buffers, then the limit). */
const ROUNDS = 100;

let temp: Awaited<ReturnType<typeof makeTempDir>>;
let service: RunningService;
let raw: TestLockClient;

before(async () => {
  temp = await makeTempDir();
  service = await startService({ lockDir: temp.path, grpcListen: "127.0.0.1:0", httpListen: "127.0.0.1:0", watchQueueLimit: QUEUE_LIMIT });
  raw = new TestLockClient(service.grpcAddress);
});
after(async () => {
  raw?.close();
  await service?.stop();
  await temp?.remove();
});

test("a watcher that stops reading is cut off with RESOURCE_EXHAUSTED; the service and other watchers carry on", async () => {
  // Reads the first event, then stops reading: grpc-js then stops reading
  // the HTTP/2 stream, and flow control pushes back to the service.
  const slow = raw.raw.watch({ resourcePrefix: "slow-" }, new Metadata());
  const slowEnded = new Promise<ServiceError>((resolve) => slow.on("error", (err: ServiceError) => resolve(err)));
  await new Promise<void>((resolve) =>
    slow.once("data", () => {
      slow.pause();
      resolve();
    }),
  );
  const client = new LockClient({ address: service.grpcAddress });
  const fast = new EventReader(client.watch("slow-"));
  try {
    assert.equal((await fast.next()).type, "SNAPSHOT_COMPLETE");
    const leases = [];
    for (let i = 0; i < LEASES; i++) {
      leases.push((await raw.acquire({ resource: `slow-res-${i}`, holder: "busy", ttl: { seconds: 60, nanos: 0 } })).lease!);
      assert.equal((await fast.next()).type, "ACQUIRED");
    }

    const stream = raw.keepAlive();
    const startedAt = Date.now();
    let renewed = 0;
    // The fast watcher reads along until the release at the end.
    const reading = fast.until((event) => event.type === "RELEASED", "RELEASED after the slow watcher was cut off", 30_000);
    for (let round = 0; round < ROUNDS; round++) {
      const answers = await Promise.all(leases.map((lease) => stream.renew(lease.leaseId)));
      renewed += answers.filter((answer) => !answer.expired).length;
    }
    const tookMs = Date.now() - startedAt;
    assert.equal(renewed, LEASES * ROUNDS, "every renewal was answered");
    stream.end();

    // Now read the slow stream: what gRPC had buffered, then the status.
    let delivered = 0;
    slow.on("data", (_event: LockEvent) => delivered++);
    slow.resume();
    const err = await withTimeout(slowEnded, 10_000, "the slow watcher's stream to end");
    assert.equal(err.code, status.RESOURCE_EXHAUSTED, `ended with ${err.code}: ${err.details}`);
    assert.match(err.details, /fell behind.*more than 64 events/);
    assert.ok(delivered < LEASES * ROUNDS, `the slow watcher got ${delivered} of ${LEASES * ROUNDS} events before being cut off`);

    // The fast watcher is still open and sees what follows.
    await raw.release(leases[0]!.leaseId);
    await reading;
    for (const lease of leases.slice(1)) await raw.release(lease.leaseId);
    const renewedEvents = fast.seen.filter((event) => event.type === "RENEWED").length;
    assert.ok(renewedEvents >= 1, "the fast watcher saw renewals");
    assert.ok(tookMs < 20_000, `renewals took ${tookMs} ms`);
  } finally {
    await fast.close();
    await client[Symbol.asyncDispose]();
    slow.cancel();
  }
});

test("shutdown ends open watches (UNAVAILABLE) and event streams at once", async () => {
  const temp2 = await makeTempDir();
  const running = await startService({ lockDir: temp2.path, grpcListen: "127.0.0.1:0", httpListen: "127.0.0.1:0" });
  const client = new LockClient({ address: running.grpcAddress });
  try {
    const watch = new EventReader(client.watch(""));
    assert.equal((await watch.next()).type, "SNAPSHOT_COMPLETE");
    const events = await fetch(`http://${running.httpAddress}/events`);
    const body = events.body!.getReader();
    assert.match(new TextDecoder().decode((await body.read()).value), /SNAPSHOT_COMPLETE/);
    const drained = (async () => {
      while (!(await body.read()).done);
    })();
    const startedAt = Date.now();
    await withTimeout(running.stop(5_000), 5_000, "the service to stop");
    assert.ok(Date.now() - startedAt < 2_000, `stopping took ${Date.now() - startedAt} ms`);
    await assert.rejects(watch.next(), (err: unknown) => err instanceof UnavailableError);
    await withTimeout(drained, 2_000, "the event stream to end");
  } finally {
    await client[Symbol.asyncDispose]();
    await running.stop();
    await temp2.remove();
  }
});
