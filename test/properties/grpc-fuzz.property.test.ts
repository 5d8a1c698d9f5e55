// Fuzz of every LockService method of the real service with random bytes and
// with well-formed requests of random field values: every answer is one the
// contract allows for that method (never INTERNAL or UNKNOWN), the service
// never crashes, and it still grants afterwards. FUZZ_RUNS sets the number
// of requests per method and kind (`npm run fuzz` runs many more).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Client, credentials, Metadata, status } from "@grpc/grpc-js";
import { AcquireRequest, ForceReleaseRequest, KeepAliveRequest, ListLocksRequest, ReleaseRequest } from "../../src/gen/mcplockd/v1/lock.ts";
import { startServiceFixture, type ServiceFixture } from "../helpers/service-process.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const identity = (bytes: Buffer) => bytes;

// Acquire may also wait past the fuzz's deadline (a decoded wait_timeout) or find the resource busy.
const ALLOWED: Record<string, Set<status>> = {
  Acquire: new Set([status.OK, status.INVALID_ARGUMENT, status.ABORTED, status.DEADLINE_EXCEEDED]),
  Release: new Set([status.INVALID_ARGUMENT, status.NOT_FOUND, status.OK]),
  ListLocks: new Set([status.OK, status.INVALID_ARGUMENT]),
  ForceRelease: new Set([status.OK, status.INVALID_ARGUMENT]),
};

const text = fc.oneof(fc.string({ maxLength: 200 }), fc.constantFrom("", "a", "ci-1", "../x", "x".repeat(129)), fc.string({ unit: "binary", maxLength: 40 }));
/** Valid names too, so that some requests get past validation to the lock manager. */
const resource = fc.oneof(text, fc.stringMatching(/^[a-z][a-z0-9-]{0,11}$/));
const duration = fc.option(fc.record({ seconds: fc.integer({ min: -5, max: 100_000 }), nanos: fc.integer({ min: -2e9, max: 2e9 }) }), { nil: undefined });
const encoded: Record<string, fc.Arbitrary<Uint8Array>> = {
  Acquire: fc
    .record({ resource, holder: text, ttl: duration, waitTimeout: duration, metadata: fc.dictionary(text, text, { maxKeys: 40 }) })
    .map((r) => AcquireRequest.encode(r).finish()),
  Release: fc.record({ leaseId: text }).map((r) => ReleaseRequest.encode(r).finish()),
  ListLocks: fc.record({ resourcePrefix: text }).map((r) => ListLocksRequest.encode(r).finish()),
  ForceRelease: fc.record({ resource, reason: text }).map((r) => ForceReleaseRequest.encode(r).finish()),
};

let fixture: ServiceFixture;
let raw: Client;
const seen = new Map<string, number>();

before(async () => {
  fixture = await startServiceFixture();
  raw = new Client(fixture.service.grpcAddress, credentials.createInsecure());
});

after(async () => {
  raw?.close();
  await fixture?.close();
});

function call(method: string, body: Uint8Array): Promise<{ code: status; response?: Buffer }> {
  return new Promise((resolve) =>
    raw.makeUnaryRequest(
      `/mcplockd.v1.LockService/${method}`, identity, identity, Buffer.from(body), new Metadata(), { deadline: Date.now() + 2_000 },
      (err, response) => resolve(err ? { code: err.code } : { code: status.OK, response }),
    ),
  );
}

for (const method of Object.keys(ALLOWED)) {
  test(`${method}: random bytes and random field values get only the statuses the contract allows`, async () => {
    for (const [kind, bytes] of [["bytes", fc.uint8Array({ maxLength: 300 })], ["fields", encoded[method]!]] as const) {
      await fc.assert(
        fc.asyncProperty(bytes, async (body) => {
          const { code, response } = await call(method, body);
          seen.set(`${method} ${kind} ${status[code]}`, (seen.get(`${method} ${kind} ${status[code]}`) ?? 0) + 1);
          assert.ok(ALLOWED[method]!.has(code), `${method} answered ${status[code]} to ${Buffer.from(body).toString("hex").slice(0, 200)}`);
          // A grant is given back, so the fuzz leaves nothing held.
          if (method === "Acquire" && response) {
            const { lease } = (await import("../../src/gen/mcplockd/v1/lock.ts")).AcquireResponse.decode(response);
            await call("Release", ReleaseRequest.encode({ leaseId: lease!.leaseId }).finish());
          }
        }),
        { numRuns: RUNS },
      );
    }
  });
}

test("KeepAlive: random bytes get an answer or INVALID_ARGUMENT, never another status", async () => {
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.record({ leaseId: text }).map((r) => KeepAliveRequest.encode(r).finish())), async (body) => {
      const stream = raw.makeBidiStreamRequest("/mcplockd.v1.LockService/KeepAlive", identity, identity, new Metadata(), {});
      const outcome = await new Promise<string>((resolve) => {
        stream.on("data", () => resolve("answered"));
        stream.on("error", (err: { code: status }) => resolve(status[err.code]!));
        stream.write(Buffer.from(body));
      });
      stream.cancel();
      seen.set(`KeepAlive ${outcome}`, (seen.get(`KeepAlive ${outcome}`) ?? 0) + 1);
      assert.ok(outcome === "answered" || outcome === "INVALID_ARGUMENT", `KeepAlive: ${outcome}`);
    }),
    { numRuns: RUNS },
  );
});

test("the service is alive and grants after the fuzz", async (t) => {
  const { lease } = await fixture.client.acquire({ resource: "after-fuzz", ttl: { seconds: 5, nanos: 0 } });
  assert.ok(lease);
  await fixture.client.release(lease.leaseId);
  assert.equal(fixture.service.child.exitCode, null);
  t.diagnostic(`statuses seen: ${[...seen].sort().map(([k, v]) => `${k}=${v}`).join(", ")}`);
  assert.doesNotMatch(fixture.service.stderr(), /internal error|uncaught|TypeError|RangeError/i);
});
