// The HTTP shim of the real service (child process): GET /health/locks,
// GET /healthz, and the error answers, with leases taken both over gRPC and
// through the file protocol alone.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startServiceFixture, type ServiceFixture } from "../helpers/service-process.ts";
import type { TestLockClient } from "../helpers/lock-client.ts";
import { assertValidLeaseFile } from "../helpers/lease-file-schema.ts";
import { waitFor } from "../helpers/wait.ts";

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

interface Entry {
  resource: unknown;
  holder: unknown;
  acquired_at: unknown;
  ttl: unknown;
  [key: string]: unknown;
}

/** Writes `data` to `<dir>/<name>` the way the file protocol says: temp file, then rename. */
async function writeAtomically(dir: string, resource: string, name: string, data: string): Promise<void> {
  const temp = join(dir, `.${resource}.${process.pid}.${Math.random().toString(16).slice(2)}.tmp`);
  await writeFile(temp, data, { flag: "wx", mode: 0o644 });
  await rename(temp, join(dir, name));
}

/** Every object key anywhere in a JSON value. */
function keysOf(value: unknown, into: string[] = []): string[] {
  if (Array.isArray(value)) value.forEach((item) => keysOf(item, into));
  else if (typeof value === "object" && value !== null) {
    for (const [key, inner] of Object.entries(value)) {
      into.push(key);
      keysOf(inner, into);
    }
  }
  return into;
}

describe("HTTP shim", () => {
  let fixture: ServiceFixture | undefined;
  let dir: string;
  let client: TestLockClient;
  let base: string;

  before(async () => {
    fixture = await startServiceFixture();
    ({ dir, client } = fixture);
    base = `http://${fixture.service.httpAddress}`;
  });

  after(() => fixture?.close());

  async function getLocks(): Promise<{ status: number; contentType: string | null; text: string; body: { locks: Entry[] } }> {
    const response = await fetch(`${base}/health/locks`);
    const text = await response.text();
    return { status: response.status, contentType: response.headers.get("content-type"), text, body: JSON.parse(text) };
  }

  /**
   * The entry of `resource` once the listing has it: the service learns of a
   * file written behind it through its directory watch, a few milliseconds
   * later (under Deno, sometimes after the next request).
   */
  async function listedSoon(resource: string): Promise<Entry> {
    let last = "";
    let entry: Entry | undefined;
    await waitFor(async () => {
      const { status, text, body } = await getLocks();
      assert.equal(status, 200);
      last = text;
      entry = body.locks.find((e) => e.resource === resource);
      return entry !== undefined;
    }, `${resource} in GET /health/locks`, 5_000).catch((err: Error) => {
      throw new Error(`${err.message}; the last answer: ${last}`);
    });
    return entry!;
  }

  test("GET /health/locks lists every holder with exactly-typed fields and no lease id", async () => {
    const before = Date.now();
    const a = (await client.acquire({ resource: "http-a", holder: "holder-a", ttl: { seconds: 30, nanos: 0 } })).lease!;
    const b = (await client.acquire({ resource: "http-b", holder: "holder-b", ttl: { seconds: 90, nanos: 500_000_000 }, metadata: { k: "v" } })).lease!;
    const after = Date.now();
    try {
      const { status, contentType, text, body } = await getLocks();
      assert.equal(status, 200);
      assert.match(contentType ?? "", /^application\/json/);
      assert.deepEqual(Object.keys(body), ["locks"], 'the body is {"locks":[...]}');
      assert.ok(Array.isArray(body.locks));
      for (const entry of body.locks) {
        assert.equal(typeof entry.resource, "string", `resource of ${JSON.stringify(entry)}`);
        assert.equal(typeof entry.holder, "string", `holder of ${JSON.stringify(entry)}`);
        assert.equal(typeof entry.acquired_at, "string", `acquired_at of ${JSON.stringify(entry)}`);
        assert.match(entry.acquired_at as string, RFC3339, "acquired_at is RFC 3339");
        assert.ok(!Number.isNaN(Date.parse(entry.acquired_at as string)));
        assert.equal(typeof entry.ttl, "number", `ttl of ${JSON.stringify(entry)}`);
        assert.ok(Number.isFinite(entry.ttl) && (entry.ttl as number) > 0);
      }
      const byResource = new Map(body.locks.map((entry) => [entry.resource, entry]));
      const entryA = byResource.get("http-a");
      const entryB = byResource.get("http-b");
      assert.ok(entryA && entryB, `both leases are listed: ${text}`);
      assert.equal(entryA.holder, "holder-a");
      assert.equal(entryA.ttl, 30, "ttl is in seconds");
      assert.equal(entryB.holder, "holder-b");
      assert.equal(entryB.ttl, 90.5, "fractional ttls keep their fraction");
      const acquiredA = Date.parse(entryA.acquired_at as string);
      assert.ok(acquiredA >= before - 5 && acquiredA <= after + 5, "acquired_at is when the lease was granted");

      for (const id of [a.leaseId, b.leaseId]) assert.ok(!text.includes(id), "a lease id leaked into /health/locks");
      const idKeys = keysOf(body).filter((key) => /^lease_?id$/i.test(key));
      assert.deepEqual(idKeys, [], "no lease id field in /health/locks");
    } finally {
      await client.release(a.leaseId);
      await client.release(b.leaseId);
    }
    const { body } = await getLocks();
    assert.ok(!body.locks.some((entry) => entry.resource === "http-a" || entry.resource === "http-b"), "released leases are no longer listed");
  });

  test("a lease taken only through the file protocol is listed", async () => {
    const now = Date.now();
    const acquiredAt = new Date(now).toISOString();
    const resource = "file-only";
    await writeAtomically(dir, resource, `${resource}.lock.fence`, JSON.stringify({ version: 1, resource, fencing_token: 7 }) + "\n");
    const lease = {
      version: 1,
      resource,
      holder: "file-protocol-process",
      acquired_at: acquiredAt,
      renewed_at: acquiredAt,
      ttl: 120,
      expires_at: new Date(now + 120_000).toISOString(),
      fencing_token: 7,
      pid: process.pid,
      hostname: hostname(),
      metadata: { via: "file" },
    };
    await writeAtomically(dir, resource, `${resource}.lock`, JSON.stringify(lease, null, 2) + "\n");
    await assertValidLeaseFile(join(dir, `${resource}.lock`));

    const entry = await listedSoon(resource);
    assert.equal(entry.holder, "file-protocol-process");
    assert.equal(entry.acquired_at, acquiredAt);
    assert.equal(entry.ttl, 120);
    // The service honours it: a gRPC try-once is refused.
    await assert.rejects(client.acquire({ resource, holder: "grpc" }), /file-protocol-process/);
  });

  test("an unreadable lease file is listed with holder \"unknown\"", async () => {
    await writeFile(join(dir, "garbled.lock"), "{ this is not json");
    const entry = await listedSoon("garbled");
    assert.equal(entry.holder, "unknown");
    assert.equal(typeof entry.acquired_at, "string");
    assert.match(entry.acquired_at as string, RFC3339);
    assert.equal(typeof entry.ttl, "number");
  });

  test("GET /healthz answers 200", async () => {
    const response = await fetch(`${base}/healthz`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
    assert.deepEqual(await response.json(), { status: "ok" });
  });

  test("an unknown path is 404 with a JSON body", async () => {
    // "/" is the web view now (test/http/web-view.test.ts).
    for (const path of ["/nope", "/health", "/health/locks/extra", "/index.html"]) {
      const response = await fetch(`${base}${path}`);
      assert.equal(response.status, 404, `${path} is 404`);
      assert.match(response.headers.get("content-type") ?? "", /^application\/json/, `${path} answers JSON`);
      const body = (await response.json()) as Record<string, unknown>;
      assert.equal(typeof body.error, "string", `${path} says what went wrong`);
    }
  });

  test("POST /health/locks is 405 with a JSON body", async () => {
    for (const [method, path] of [
      ["POST", "/health/locks"],
      ["DELETE", "/health/locks"],
      ["PUT", "/healthz"],
    ] as const) {
      const response = await fetch(`${base}${path}`, { method, body: method === "DELETE" ? undefined : "{}" });
      assert.equal(response.status, 405, `${method} ${path} is 405`);
      assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
      assert.match(response.headers.get("allow") ?? "", /GET/, "405 names the allowed methods");
      const body = (await response.json()) as Record<string, unknown>;
      assert.equal(typeof body.error, "string");
    }
    // Nothing was changed by the refused requests.
    assert.equal((await fetch(`${base}/health/locks`)).status, 200);
  });
});
