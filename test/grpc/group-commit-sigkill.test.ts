// A SIGKILL of the service while grants on many resources are in flight,
// sharing directory fsyncs (group commit), loses no grant it answered: every
// answered lease is in its file, with its token, its lease-id hash and a
// fencing counter at that token, and a service restarted on the lock dir
// holds it. (A SIGKILL keeps the page cache, so this checks that nothing is
// answered before it is committed; that it is durable before the answer, for
// a power cut, is what test/store/durability-order.test.ts records.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { Lease } from "../../src/gen/mcplockd/v1/lock.ts";
import { readFenceToken } from "../helpers/fence.ts";
import { assertValidLeaseFile } from "../helpers/lease-file-schema.ts";
import { TestLockClient } from "../helpers/lock-client.ts";
import { startServiceProcess } from "../helpers/service-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

const CALLERS = 64;
const CONNECTIONS = 8;
/** Answers to wait for before the kill: enough that many group commits have run, with more in flight. */
const KILL_AFTER = 200;
const TTL_60S = { seconds: 60, nanos: 0 };

test("a SIGKILL in the middle of group commits loses no answered grant", { timeout: 60_000 }, async () => {
  const temp = await makeTempDir("mcp-lockd-group-kill-");
  const clients: TestLockClient[] = [];
  try {
    const service = await startServiceProcess({ lockDir: temp.path });
    for (let i = 0; i < CONNECTIONS; i++) clients.push(new TestLockClient(service.grpcAddress));
    const answered: Lease[] = [];
    let inFlight = 0;
    let inFlightAtKill = -1;
    let killed: Promise<unknown> | undefined;
    // Each caller takes fresh resources one after another until its call fails with the kill.
    await Promise.all(
      Array.from({ length: CALLERS }, async (_, caller) => {
        const client = clients[caller % CONNECTIONS]!;
        for (let n = 0; ; n++) {
          inFlight++;
          try {
            const response = await client.acquire({ resource: `g${caller}-${n}`, holder: `caller-${caller}`, ttl: TTL_60S });
            assert.ok(response.lease, "Acquire answered without a lease");
            // Answers that arrive after the kill was sent count too: the service sent them.
            answered.push(response.lease);
          } catch {
            return; // the connection died with the service
          } finally {
            inFlight--;
          }
          if (answered.length >= KILL_AFTER && killed === undefined) {
            inFlightAtKill = inFlight;
            killed = service.stop("SIGKILL");
          }
        }
      }),
    );
    assert.equal(await killed, "SIGKILL");
    assert.ok(inFlightAtKill > 0, "grants were in flight when the service was killed");

    for (const lease of answered) {
      const doc = await assertValidLeaseFile(join(temp.path, `${lease.resource}.lock`));
      assert.equal(doc.fencing_token, lease.fencingToken, `${lease.resource}: the token answered`);
      assert.equal(doc.lease_id_sha256, createHash("sha256").update(lease.leaseId).digest("hex"), `${lease.resource}: the lease answered`);
      assert.equal(await readFenceToken(temp.path, lease.resource), lease.fencingToken, `${lease.resource}: the counter names the token`);
    }

    const restarted = await startServiceProcess({ lockDir: temp.path });
    try {
      const probe = new TestLockClient(restarted.grpcAddress);
      clients.push(probe);
      const held = new Set((await probe.listLocks()).locks.map((lock) => lock.resource));
      const lost = answered.filter((lease) => !held.has(lease.resource)).map((lease) => lease.resource);
      assert.deepEqual(lost, [], "the restarted service holds every answered lease");
    } finally {
      await restarted.stop("SIGKILL");
    }
  } finally {
    for (const client of clients) client.close();
    await temp.remove();
  }
});
