import { test } from "node:test";
import assert from "node:assert/strict";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { startServiceProcess } from "../helpers/service-process.ts";
import { TestLockClient } from "../helpers/lock-client.ts";
import { assertValidLockDir } from "../helpers/lease-file-schema.ts";

test("smoke: acquire, list, renew, release", async () => {
  const dir = await makeTempDir();
  const service = await startServiceProcess({ lockDir: dir.path });
  const client = new TestLockClient(service.grpcAddress);
  try {
    const { lease } = await client.acquire({ resource: "gateway", holder: "me", ttl: { seconds: 5, nanos: 0 } });
    assert.ok(lease && lease.leaseId.length >= 22);
    assert.equal(await assertValidLockDir(dir.path), 1);
    const list = await client.listLocks();
    assert.equal(list.locks.length, 1);
    assert.equal(list.locks[0]!.leaseId, "");
    const ka = client.keepAlive();
    const r = await ka.renew(lease.leaseId);
    assert.equal(r.expired, false);
    ka.end();
    assert.deepEqual(await client.release(lease.leaseId), { released: true });
    assert.equal(await assertValidLockDir(dir.path), 0);
  } finally {
    client.close();
    await service.stop();
    await dir.remove();
  }
});
