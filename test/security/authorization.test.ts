// --auth-file against the real service as a child process: every permission
// case over gRPC and HTTP, reload of the file (and a broken one), a bad file
// at start, and tokens that never reach the log.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { cliCommand, startServiceProcess, type ServiceProcess } from "../helpers/service-process.ts";
import { expectGrpcError, TestLockClient } from "../helpers/lock-client.ts";
import { runProcess } from "../helpers/run-process.ts";
import { waitFor } from "../helpers/wait.ts";
import { LockClient } from "../../src/client/index.ts";

const seconds = (s: number) => ({ seconds: s, nanos: 0 });
const token = () => randomBytes(24).toString("base64url");
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

const TOKENS = { admin: token(), ci: token(), reader: token(), locker: token() };

type Grants = Array<{ resource_prefix: string; actions: string[] }>;

function authFile(ciGrants: Grants): string {
  return JSON.stringify({
    principals: [
      { name: "admin", token_sha256: sha256(TOKENS.admin), grants: [{ resource_prefix: "", actions: ["admin"] }] },
      { name: "ci", token_sha256: sha256(TOKENS.ci), grants: ciGrants },
      { name: "reader", token_sha256: sha256(TOKENS.reader), grants: [{ resource_prefix: "", actions: ["read"] }] },
      { name: "locker", token_sha256: sha256(TOKENS.locker), grants: [{ resource_prefix: "x-", actions: ["lock"] }] },
    ],
  });
}

const CI_GRANTS: Grants = [{ resource_prefix: "ci-", actions: ["lock", "read"] }];

async function httpGet(address: string, path: string, authorization?: string): Promise<{ status: number; body: any }> {
  const response = await fetch(`http://${address}${path}`, { headers: authorization ? { authorization } : {} });
  return { status: response.status, body: await response.json() };
}

describe("authorization with --auth-file", () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let service: ServiceProcess;
  let authPath: string;
  const clients: TestLockClient[] = [];
  const as = (who: keyof typeof TOKENS | "nobody" | "stranger") => {
    const client = new TestLockClient(service.grpcAddress, who === "nobody" ? {} : { token: who === "stranger" ? token() : TOKENS[who] });
    clients.push(client);
    return client;
  };

  before(async () => {
    temp = await makeTempDir();
    authPath = join(temp.path, "auth.json");
    await writeFile(authPath, authFile(CI_GRANTS));
    service = await startServiceProcess({ lockDir: join(temp.path, "locks"), extraArgs: ["--auth-file", authPath, "--max-leases-per-owner", "3"] });
  });

  after(async () => {
    for (const client of clients) client.close();
    await service?.stop();
    await temp?.remove();
  });

  test("no credentials, an unknown token or a non-bearer header: UNAUTHENTICATED on every method", async () => {
    const admin = as("admin");
    const { lease } = await admin.acquire({ resource: "ci-held", ttl: seconds(10) });
    for (const who of ["nobody", "stranger"] as const) {
      const client = as(who);
      await expectGrpcError(client.acquire({ resource: "ci-a" }), status.UNAUTHENTICATED, [], `${who} Acquire`);
      await expectGrpcError(client.release(lease!.leaseId), status.UNAUTHENTICATED, [], `${who} Release`);
      await expectGrpcError(client.listLocks(), status.UNAUTHENTICATED, [], `${who} ListLocks`);
      await expectGrpcError(client.forceRelease("ci-held", "x"), status.UNAUTHENTICATED, [], `${who} ForceRelease`);
      const stream = client.keepAlive();
      stream.call.write({ leaseId: lease!.leaseId });
      const ended = await stream.ended;
      assert.equal(ended?.code, status.UNAUTHENTICATED, `${who} KeepAlive`);
    }
    // The lease was not touched by any of them.
    assert.deepEqual((await admin.listLocks()).locks.map((l) => l.resource), ["ci-held"]);
    assert.deepEqual(await admin.release(lease!.leaseId), { released: true });
  });

  test("lock and read within the grants; PERMISSION_DENIED naming resource and action outside them", async () => {
    const admin = as("admin");
    const ci = as("ci");
    const { lease: prod } = await admin.acquire({ resource: "prod", ttl: seconds(10) });
    const { lease: mine } = await ci.acquire({ resource: "ci-build", ttl: seconds(10) });
    assert.ok(mine);
    await expectGrpcError(ci.acquire({ resource: "prod" }), status.PERMISSION_DENIED, ['"prod"', "lock", '"ci"']);
    // Only what ci may read, while admin sees both.
    assert.deepEqual((await ci.listLocks()).locks.map((l) => l.resource), ["ci-build"]);
    assert.deepEqual((await admin.listLocks()).locks.map((l) => l.resource), ["ci-build", "prod"]);
    // Someone else's lease id does not let ci act on a resource outside its grants.
    await expectGrpcError(ci.release(prod!.leaseId), status.PERMISSION_DENIED, ['"prod"', "lock"]);
    const stream = ci.keepAlive();
    assert.equal((await stream.renew(mine.leaseId)).expired, false, "ci renews its own lease");
    const refused = await stream.renew(prod!.leaseId);
    assert.equal(refused.error?.code, status.PERMISSION_DENIED, "renewing admin's lease is refused in-band");
    assert.match(refused.error!.message, /"prod"/);
    assert.equal((await stream.renew(mine.leaseId)).expired, false, "the stream carries on for ci's own lease");
    stream.end();
    await expectGrpcError(ci.forceRelease("ci-build", "mine"), status.PERMISSION_DENIED, ["admin", '"ci-build"']);
    // read-only and lock-only principals.
    const reader = as("reader");
    assert.deepEqual((await reader.listLocks()).locks.map((l) => l.resource), ["ci-build", "prod"]);
    await expectGrpcError(reader.acquire({ resource: "ci-x" }), status.PERMISSION_DENIED, ["lock", '"ci-x"']);
    const locker = as("locker");
    await expectGrpcError(locker.listLocks(), status.PERMISSION_DENIED, ['"locker"', "read"]);
    const { lease: x } = await locker.acquire({ resource: "x-1", ttl: seconds(10) });
    assert.deepEqual(await locker.release(x!.leaseId), { released: true });
    // admin frees ci's lock.
    const forced = await admin.forceRelease("ci-build", "test: admin may");
    assert.equal(forced.released, true);
    assert.equal(forced.fencingToken, mine.fencingToken);
    assert.deepEqual(await admin.release(prod!.leaseId), { released: true });
  });

  test("leases are limited per principal, across its connections", async () => {
    const a = new TestLockClient(service.grpcAddress, { token: TOKENS.locker, channelOptions: { "grpc.use_local_subchannel_pool": 1 } });
    const b = new TestLockClient(service.grpcAddress, { token: TOKENS.locker, channelOptions: { "grpc.use_local_subchannel_pool": 1 } });
    clients.push(a, b);
    const leases = [
      (await a.acquire({ resource: "x-p1", ttl: seconds(10) })).lease!,
      (await a.acquire({ resource: "x-p2", ttl: seconds(10) })).lease!,
      (await b.acquire({ resource: "x-p3", ttl: seconds(10) })).lease!,
    ];
    await expectGrpcError(b.acquire({ resource: "x-p4", ttl: seconds(10) }), status.RESOURCE_EXHAUSTED, ['principal "locker"', "max-leases-per-owner (3)"]);
    const { lease: ci } = await as("ci").acquire({ resource: "ci-other", ttl: seconds(10) });
    assert.ok(ci, "another principal is not affected");
    for (const lease of leases) await a.release(lease.leaseId);
    await as("ci").release(ci!.leaseId);
  });

  test("Watch needs read on its whole prefix; /metrics and /events need read on all", async () => {
    const firstEvent = async (token: string | undefined, prefix: string): Promise<string> => {
      const client = new LockClient({ address: service.grpcAddress, ...(token === undefined ? {} : { token }) });
      try {
        for await (const event of client.watch(prefix)) return event.type;
        return "ended";
      } catch (err) {
        return `${(err as { code?: number }).code}`;
      } finally {
        client.close();
      }
    };
    assert.equal(await firstEvent(TOKENS.ci, "ci-"), "SNAPSHOT_COMPLETE");
    assert.equal(await firstEvent(TOKENS.ci, ""), String(status.PERMISSION_DENIED));
    assert.equal(await firstEvent(undefined, "ci-"), String(status.UNAUTHENTICATED));
    assert.equal(await firstEvent(TOKENS.reader, ""), "SNAPSHOT_COMPLETE");
    assert.equal((await fetch(`http://${service.httpAddress}/metrics`)).status, 401);
    assert.equal((await fetch(`http://${service.httpAddress}/metrics`, { headers: { authorization: `Bearer ${TOKENS.ci}` } })).status, 403);
    const metrics = await fetch(`http://${service.httpAddress}/metrics`, { headers: { authorization: `Bearer ${TOKENS.reader}` } });
    assert.equal(metrics.status, 200);
    await metrics.text();
    assert.equal((await fetch(`http://${service.httpAddress}/events`)).status, 401);
  });

  test("HTTP: /healthz open, /health/locks 401 without credentials, 403 without read, filtered with it", async () => {
    const ci = as("ci");
    const admin = as("admin");
    const { lease: a } = await ci.acquire({ resource: "ci-http", ttl: seconds(10) });
    const { lease: b } = await admin.acquire({ resource: "other", ttl: seconds(10) });
    assert.deepEqual(await httpGet(service.httpAddress, "/healthz"), { status: 200, body: { status: "ok" } });
    const anonymous = await httpGet(service.httpAddress, "/health/locks");
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.error, "unauthenticated");
    assert.equal((await httpGet(service.httpAddress, "/health/locks", `Bearer ${token()}`)).status, 401);
    const locker = await httpGet(service.httpAddress, "/health/locks", `Bearer ${TOKENS.locker}`);
    assert.equal(locker.status, 403);
    assert.match(locker.body.detail, /"locker" may not read/);
    const filtered = await httpGet(service.httpAddress, "/health/locks", `Bearer ${TOKENS.ci}`);
    assert.equal(filtered.status, 200);
    assert.deepEqual(filtered.body.locks.map((l: { resource: string }) => l.resource), ["ci-http"]);
    await ci.release(a!.leaseId);
    await admin.release(b!.leaseId);
  });

  test("the file is re-read on change; a broken version keeps the last good one; tokens never reach the log", async () => {
    const ci = as("ci");
    await expectGrpcError(ci.acquire({ resource: "prod-2" }), status.PERMISSION_DENIED);
    const reloads = () => service.stderr().split("reloaded").length - 1;
    const before = reloads();
    await writeFile(`${authPath}.new`, authFile([...CI_GRANTS, { resource_prefix: "prod-", actions: ["lock"] }]));
    await rename(`${authPath}.new`, authPath);
    await waitFor(() => reloads() > before, "the auth file to be reloaded");
    const { lease } = await ci.acquire({ resource: "prod-2", ttl: seconds(10) });
    assert.deepEqual(await ci.release(lease!.leaseId), { released: true });

    const failures = () => service.stderr().split("not reloaded, keeping the previous version").length - 1;
    const failed = failures();
    await writeFile(authPath, '{"principals": [{"name": "ci", "grants": "all"}]}');
    await waitFor(() => failures() > failed, "the broken auth file to be reported");
    assert.match(service.stderr(), /needs token_sha256 or cert_common_name/);
    const again = await ci.acquire({ resource: "prod-2", ttl: seconds(10) });
    assert.deepEqual(await ci.release(again.lease!.leaseId), { released: true });

    for (const [who, secret] of Object.entries(TOKENS)) assert.ok(!service.stderr().includes(secret), `${who}'s token is not logged`);
    // Restore the original grants for other tests.
    await writeFile(authPath, authFile(CI_GRANTS));
  });
});

test("a bad auth file stops the start with a message naming the problem", async () => {
  const temp = await makeTempDir();
  try {
    const path = join(temp.path, "auth.json");
    await writeFile(path, JSON.stringify({ principals: [{ name: "x", token_sha256: "ABC", grants: [] }] }));
    const { command, args } = cliCommand(["serve", "--lock-dir", temp.path, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--auth-file", path]);
    const result = await runProcess(command, args, { timeoutMs: 15_000 });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /--auth-file .*principals\[0\]\.token_sha256: expected 64 lowercase hex digits/);
  } finally {
    await temp.remove();
  }
});
