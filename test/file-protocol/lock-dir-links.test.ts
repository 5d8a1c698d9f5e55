// The lock dir is never read or written through a symbolic link, and a lease
// path that is not a regular file is listed as unreadable: against the real
// service, with the links and files made in the test.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { startServiceProcess, type ServiceProcess } from "../helpers/service-process.ts";
import { expectGrpcError, TestLockClient } from "../helpers/lock-client.ts";
import { fetchHealthLocks } from "../helpers/health-locks.ts";

const SECRET = "root:x:0:0:root:/root:/bin/bash\n";

describe("links and odd files in the lock dir", () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let lockDir: string;
  let outside: string;
  let service: ServiceProcess;
  let client: TestLockClient;

  before(async () => {
    temp = await makeTempDir();
    lockDir = join(temp.path, "locks");
    outside = join(temp.path, "passwd-copy");
    await mkdir(lockDir);
    await writeFile(outside, SECRET);
    // An old target: read through the link, it would pass for an expired lease and be granted.
    const old = new Date(Date.now() - 3 * 3_600_000);
    await utimes(outside, old, old);
    await symlink(outside, join(lockDir, "linked.lock"));
    await symlink(outside, join(lockDir, "fenced.lock.fence"));
    await mkdir(join(lockDir, "a-dir.lock"));
    await writeFile(join(lockDir, "junk.lock"), SECRET);
    service = await startServiceProcess({ lockDir });
    client = new TestLockClient(service.grpcAddress);
  });

  after(async () => {
    client?.close();
    await service?.stop();
    await temp?.remove();
  });

  test("a symlinked lease file, a directory and junk are listed as unreadable, naming the problem and no content", async () => {
    const listed = new Map((await client.listLocks()).locks.map((l) => [l.resource, l]));
    assert.deepEqual([...listed.keys()].sort(), ["a-dir", "junk", "linked"]);
    for (const lock of listed.values()) {
      assert.equal(lock.state, "unreadable");
      assert.equal(lock.holder, "unknown");
      assert.ok(!JSON.stringify(lock).includes("root:x"), `no file content in ${JSON.stringify(lock.metadata)}`);
    }
    assert.match(listed.get("linked")!.metadata.unreadable_reason!, /symbolic link/);
    assert.match(listed.get("a-dir")!.metadata.unreadable_reason!, /directory/);
    assert.equal(listed.get("junk")!.metadata.unreadable_reason, "not JSON");
    const health = await fetchHealthLocks(service);
    assert.ok(!JSON.stringify(health).includes("root:x"), "nor on /health/locks");
    assert.deepEqual(health.map((entry) => entry.state), ["unreadable", "unreadable", "unreadable"]);
  });

  test("a symlinked lease file holds the resource; its target is never written", async () => {
    await expectGrpcError(client.acquire({ resource: "linked", ttl: { seconds: 5, nanos: 0 } }), status.ABORTED, ['"unknown"']);
    assert.equal(await readFile(outside, "utf8"), SECRET);
  });

  test("a symlinked fencing counter is refused, not read or written through", async () => {
    const details = await expectGrpcError(client.acquire({ resource: "fenced", ttl: { seconds: 5, nanos: 0 } }), status.INTERNAL, [/not a regular file|symbolic link/]);
    assert.ok(!details.includes("root:x"));
    assert.equal(await readFile(outside, "utf8"), SECRET);
    // The service keeps serving others.
    const { lease } = await client.acquire({ resource: "fine", ttl: { seconds: 5, nanos: 0 } });
    await client.release(lease!.leaseId);
  });
});
