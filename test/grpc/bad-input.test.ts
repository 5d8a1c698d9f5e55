// Hostile and malformed input against the real service as a child process:
// request fields over their limits (on either store: lease files or etcd),
// broken lease files on disk, and a lock dir that cannot be created.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { status } from "@grpc/grpc-js";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { startServiceProcess, type ServiceProcess } from "../helpers/service-process.ts";
import { startServiceUnderTest, storesUnderTest, type ServiceUnderTest } from "../helpers/service-under-test.ts";
import { TestLockClient, expectGrpcError } from "../helpers/lock-client.ts";
import { assertValidLeaseFile } from "../helpers/lease-file-schema.ts";
import type { AcquireRequest, Lease } from "../../src/gen/mcplockd/v1/lock.ts";
import { waitFor } from "../helpers/wait.ts";

type Duration = { seconds: number; nanos: number };
const seconds = (s: number): Duration => ({ seconds: s, nanos: 0 });

/** Runs every check, then fails once listing all that failed (so one bad case hides no other). */
async function allOf(checks: Array<() => Promise<unknown>>): Promise<void> {
  const failures: string[] = [];
  for (const check of checks) {
    try {
      await check();
    } catch (err) {
      failures.push((err as Error).message);
    }
  }
  assert.deepEqual(failures, [], `${failures.length} of ${checks.length} cases failed:\n${failures.join("\n")}`);
}

/** Bad values distinctive enough to look for in what the store holds. */
const BAD_VALUES = ["../x", "nul\u0000byte", "/etc/passwd", ".hidden", "r".repeat(300), "h".repeat(10 * 1024), "line\nbreak", "v".repeat(10 * 1024), "bad key"];

for (const kind of storesUnderTest()) describe(`bad input against a healthy ${kind} store`, () => {
  let fixture: ServiceUnderTest | undefined;
  let parent: string;
  let lockDir: string;
  let client: TestLockClient;

  before(async () => {
    fixture = await startServiceUnderTest(kind, { lockSubdir: "locks" });
    ({ client } = fixture);
    if (fixture.store.lockDir !== undefined) {
      lockDir = fixture.store.lockDir;
      parent = dirname(lockDir);
    }
  });

  after(() => fixture?.close());

  /**
   * File store: everything under the parent temp dir, where only the lock
   * dir may be. etcd: no key or value under the prefix holds a bad value.
   */
  async function assertNothingOutsideLockDir(): Promise<void> {
    if (kind === "file") {
      assert.deepEqual(await readdir(parent), ["locks"], "nothing may be created next to the lock dir");
      return;
    }
    const stored = await fixture!.store.storedTexts();
    for (const bad of BAD_VALUES) assert.ok(!stored.some((text) => text.includes(bad)), `etcd holds ${JSON.stringify(bad.slice(0, 40))}`);
  }

  async function assertStillServes(resource: string): Promise<void> {
    const { lease } = await client.acquire({ resource, holder: "after-bad-input", ttl: seconds(10) });
    assert.ok(lease, "acquire works after bad input");
    assert.equal(lease.resource, resource);
    if (kind === "file") assert.equal((await assertValidLeaseFile(join(lockDir, `${resource}.lock`))).resource, resource);
    assert.equal((await client.listLocks(resource)).locks[0]?.holder, "after-bad-input");
    assert.deepEqual(await client.release(lease.leaseId), { released: true });
  }

  test("bad resource names are INVALID_ARGUMENT naming `resource`", async () => {
    const cases: Array<[string, string, RegExp[]]> = [
      ["parent traversal", "../x", []],
      ["a slash", "a/b", []],
      ["empty", "", []],
      ["300 characters", "r".repeat(300), [/128/]],
      ["a NUL byte", "nul\u0000byte", []],
      ["dot dot", "..", []],
      ["dot", ".", []],
      ["absolute path", "/etc/passwd", []],
      ["leading dot", ".hidden", []],
    ];
    await allOf(
      cases.map(([label, resource, extra]) => () =>
        expectGrpcError(
          client.acquire({ resource, holder: "bad", ttl: seconds(5) }),
          status.INVALID_ARGUMENT,
          [/\bresource\b/, ...extra],
          `resource with ${label}`,
        ),
      ),
    );
    // ListLocks and the lock dir show nothing of them.
    assert.deepEqual((await client.listLocks()).locks, []);
    if (kind === "file") assert.deepEqual(await readdir(lockDir), [], "no file was created in the lock dir");
    await assertNothingOutsideLockDir();
  });

  test("bad ttls are INVALID_ARGUMENT naming `ttl` and its limit", async () => {
    const cases: Array<[string, Duration]> = [
      ["zero", { seconds: 0, nanos: 0 }],
      ["negative", { seconds: -5, nanos: 0 }],
      ["negative nanos", { seconds: 0, nanos: -1 }],
      ["2 h", { seconds: 7200, nanos: 0 }],
      ["1 ns", { seconds: 0, nanos: 1 }],
      ["999 ms", { seconds: 0, nanos: 999_000_000 }],
      ["3600 s + 1 ns", { seconds: 3600, nanos: 1 }],
    ];
    await allOf(
      cases.map(([label, ttl]) => () =>
        expectGrpcError(
          client.acquire({ resource: "ttl-check", holder: "bad", ttl }),
          status.INVALID_ARGUMENT,
          [/\bttl\b/, /\b1 ?s\b/, /3600/],
          `ttl of ${label}`,
        ),
      ),
    );
    // The limits themselves are allowed.
    for (const ttl of [seconds(1), seconds(3600)]) {
      const { lease } = await client.acquire({ resource: "ttl-check", holder: "edge", ttl });
      assert.ok(lease);
      await client.release(lease.leaseId);
    }
    await assertNothingOutsideLockDir();
  });

  test("a negative wait_timeout is INVALID_ARGUMENT naming `wait_timeout` and its limit", async () => {
    const cases: Array<[string, Duration]> = [
      ["negative seconds", { seconds: -1, nanos: 0 }],
      ["negative nanos", { seconds: 0, nanos: -5 }],
      ["over 24 h", { seconds: 86_401, nanos: 0 }],
    ];
    await allOf(
      cases.map(([label, waitTimeout]) => () =>
        expectGrpcError(
          client.acquire({ resource: "wait-check", holder: "bad", ttl: seconds(5), waitTimeout }),
          status.INVALID_ARGUMENT,
          [/\bwait_timeout\b/, /86400|24 ?h/],
          `wait_timeout of ${label}`,
        ),
      ),
    );
    await assertNothingOutsideLockDir();
  });

  test("an oversized holder and oversized metadata are INVALID_ARGUMENT naming the field and limit", async () => {
    await expectGrpcError(
      client.acquire({ resource: "holder-check", holder: "h".repeat(10 * 1024), ttl: seconds(5) }),
      status.INVALID_ARGUMENT,
      [/\bholder\b/, /256/],
      "holder of 10 KB",
    );
    await expectGrpcError(
      client.acquire({ resource: "holder-check", holder: "line\nbreak", ttl: seconds(5) }),
      status.INVALID_ARGUMENT,
      [/\bholder\b/, /control/],
      "holder with a control character",
    );
    const many: Record<string, string> = {};
    for (let i = 0; i < 1000; i++) many[`k${i}`] = "v";
    await expectGrpcError(
      client.acquire({ resource: "meta-check", holder: "bad", ttl: seconds(5), metadata: many }),
      status.INVALID_ARGUMENT,
      [/\bmetadata\b/, /\b32\b/],
      "metadata with 1000 entries",
    );
    await expectGrpcError(
      client.acquire({ resource: "meta-check", holder: "bad", ttl: seconds(5), metadata: { big: "v".repeat(10 * 1024) } }),
      status.INVALID_ARGUMENT,
      [/\bmetadata\b/, /1024/],
      "metadata with a 10 KB value",
    );
    await expectGrpcError(
      client.acquire({ resource: "meta-check", holder: "bad", ttl: seconds(5), metadata: { "bad key": "v" } }),
      status.INVALID_ARGUMENT,
      [/\bmetadata\b/],
      "metadata with a bad key",
    );
    assert.deepEqual((await client.listLocks()).locks, []);
    await assertNothingOutsideLockDir();
  });

  test("after all the bad input the service still serves and stored none of it", async () => {
    await assertStillServes("still-serving");
    await assertNothingOutsideLockDir();
    if (kind !== "file") return;
    const entries = await readdir(lockDir);
    for (const entry of entries) {
      assert.match(entry, /^(still-serving|ttl-check)\.lock\.fence$/, `unexpected entry ${entry} in the lock dir`);
    }
  });

  test("empty, torn and binary lease files are listed as unreadable, block try-once, and harm nothing else", { skip: kind !== "file" && "lease files only" }, async () => {
    const files: Record<string, string | Buffer> = {
      "broken-empty": "",
      "broken-torn": '{"version":1,"res',
      "broken-binary": Buffer.from([0x00, 0xff, 0xfe, 0x7b, 0x80, 0x01, 0x22, 0xc3, 0x28, 0x0a, 0x00, 0x9f]),
    };
    for (const [resource, content] of Object.entries(files)) await writeFile(join(lockDir, `${resource}.lock`), content);

    // Listings come from what the service tracks: files written behind it
    // arrive through its directory watch, a few milliseconds later.
    let listed: Lease[] = [];
    await waitFor(async () => (listed = (await client.listLocks("broken-")).locks).length >= 3, "the three broken files to be listed", 5_000).catch(() => {});
    assert.deepEqual(
      listed.map((lock) => lock.resource),
      ["broken-binary", "broken-empty", "broken-torn"],
      "every broken file is listed, sorted by name",
    );
    for (const lock of listed) {
      assert.equal(lock.holder, "unknown", `${lock.resource} is held by "unknown"`);
      assert.equal(lock.state, "unreadable", `${lock.resource} is "unreadable"`);
      assert.equal(lock.leaseId, "");
    }
    for (const resource of Object.keys(files)) {
      await expectGrpcError(
        client.acquire({ resource, holder: "tries", ttl: seconds(5) }),
        status.ABORTED,
        [resource, "unknown"],
        `try-once on ${resource}`,
      );
    }
    // A short wait on one of them also fails as busy, not with an internal error.
    await expectGrpcError(
      client.acquire({ resource: "broken-torn", holder: "waits", ttl: seconds(5), waitTimeout: { seconds: 0, nanos: 300_000_000 } }),
      status.ABORTED,
      ["broken-torn"],
      "a short wait on a torn file",
    );
    await assertStillServes("healthy-neighbour");
    // The service never "repaired" the broken files by itself.
    for (const resource of Object.keys(files)) {
      assert.ok((await readdir(lockDir)).includes(`${resource}.lock`), `${resource}.lock is left for an operator`);
    }
    await assertNothingOutsideLockDir();
  });
});

describe("a lock dir that cannot be created", () => {
  let tmp: { path: string; remove(): Promise<void> };
  let lockDir: string;
  let service: ServiceProcess;
  let client: TestLockClient;

  before(async () => {
    tmp = await makeTempDir();
    await writeFile(join(tmp.path, "afile"), "a regular file, not a directory\n");
    lockDir = join(tmp.path, "afile", "locks");
    service = await startServiceProcess({ lockDir });
    client = new TestLockClient(service.grpcAddress);
  });

  after(async () => {
    client?.close();
    await service?.stop();
    await tmp?.remove();
  });

  test("the service starts; Acquire is UNAVAILABLE with the path and ENOTDIR, promptly; /healthz answers 200", async () => {
    const request: AcquireRequest = { resource: "x", holder: "h", ttl: seconds(5), waitTimeout: undefined, metadata: {} };
    const started = Date.now();
    const acquiring = client.acquire(request);
    let finishedAt = 0;
    const checked = expectGrpcError(acquiring, status.UNAVAILABLE, [lockDir, "ENOTDIR"], "Acquire in an unusable lock dir").finally(
      () => (finishedAt = Date.now()),
    );

    // While that is in flight, the HTTP shim still answers liveness...
    const health = await fetch(`http://${service.httpAddress}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(health.headers.get("content-type"), "application/json");
    assert.deepEqual(await health.json(), { status: "ok" });
    // ...and ListLocks says why it cannot list.
    await expectGrpcError(client.listLocks(), status.UNAVAILABLE, [lockDir, "ENOTDIR"], "ListLocks in an unusable lock dir");

    await checked;
    assert.equal(service.child.exitCode, null, "the service is still running");
    const elapsed = finishedAt - started;
    assert.ok(
      elapsed < 5_000,
      `Acquire took ${elapsed} ms to report a permanent ENOTDIR: the guard retries non-EEXIST errors (src/store/lease-file-store.ts guarded())`,
    );
    assert.equal((await fetch(`http://${service.httpAddress}/healthz`)).status, 200, "/healthz still answers afterwards");
  });
});
