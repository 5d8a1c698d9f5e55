import assert from "node:assert/strict";
import { fetchHealthLocks } from "./health-locks.ts";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { describeService, healthCheck, listServices } from "./introspection-client.ts";
import { expectGrpcError, ms } from "./lock-client.ts";
import { assertValidLeaseFile } from "./lease-file-schema.ts";
import { startServiceUnderTest, type ServiceLaunch } from "./service-under-test.ts";

const LOCK_SERVICE = "mcplockd.v1.LockService";
const TTL_20S = { seconds: 20, nanos: 0 };



/**
 * The life of one deployment, the same whatever runs the service (the single
 * executable, Deno, Node): serve on ports 0 with a lock dir in a temp dir;
 * Acquire; KeepAlive; GET /health/locks; grpc.health.v1 Check is SERVING;
 * reflection lists and describes the LockService; SIGKILL, then a restart on
 * the same lock dir keeps the lease (its holder renews it with its lease_id,
 * another holder is refused with ABORTED); SIGTERM exits 0.
 *
 * `launch` says what runs the service, and where.
 */
export async function runLifecycle(launch: ServiceLaunch): Promise<void> {
  const deployment = await startServiceUnderTest("file", { lockSubdir: "locks", launch });
  const lockDir = deployment.store.lockDir!;
  try {
    const first = deployment.service;
    assert.match(first.grpcAddress, /^127\.0\.0\.1:[1-9]\d*$/, "port 0 became a real gRPC port");
    assert.match(first.httpAddress, /^127\.0\.0\.1:[1-9]\d*$/, "port 0 became a real HTTP port");

    // Introspection, as a client that has no .proto would use it.
    assert.equal(await healthCheck(first.grpcAddress, ""), "SERVING");
    assert.equal(await healthCheck(first.grpcAddress, LOCK_SERVICE), "SERVING");
    const listed = await listServices(first.grpcAddress);
    assert.ok(listed.includes(LOCK_SERVICE), `reflection lists ${LOCK_SERVICE}: ${listed.join(", ")}`);
    const described = await describeService(first.grpcAddress, LOCK_SERVICE);
    for (const method of ["Acquire", "Release", "KeepAlive", "ListLocks"]) {
      assert.ok(described.methods.includes(method), `reflection describes ${method}: ${described.methods.join(", ")}`);
    }

    const holder = deployment.client;
    const { lease } = await holder.acquire({ resource: "e2e", holder: "holder-e2e", ttl: TTL_20S });
    assert.ok(lease, "Acquire granted a lease");
    const stream = holder.keepAlive();
    const renewed = await stream.renew(lease.leaseId);
    assert.equal(renewed.expired, false);
    assert.ok(ms(renewed.expiresAt) >= ms(lease.expiresAt), "KeepAlive does not shorten the lease");
    assert.deepEqual(
      (await fetchHealthLocks(first)).map((e) => [e.resource, e.holder, e.fencing_token, e.state]),
      [["e2e", "holder-e2e", lease.fencingToken, "held"]],
    );
    const file = await assertValidLeaseFile(join(lockDir, "e2e.lock"));
    assert.equal(file.holder, "holder-e2e");

    assert.equal(await first.stop("SIGKILL"), "SIGKILL");
    const lost = await stream.ended;
    assert.equal(lost?.code, status.UNAVAILABLE, `the KeepAlive stream ends UNAVAILABLE with its server: ${lost?.details}`);

    const second = await deployment.start();
    const other = deployment.connect(second);
    await expectGrpcError(other.acquire({ resource: "e2e", holder: "intruder" }), status.ABORTED, ['"holder-e2e"'], "after the restart");
    assert.deepEqual(
      (await fetchHealthLocks(second)).map((e) => [e.resource, e.holder, e.fencing_token]),
      [["e2e", "holder-e2e", lease.fencingToken]],
    );
    const holderAgain = deployment.connect(second);
    const streamAgain = holderAgain.keepAlive();
    const renewedAgain = await streamAgain.renew(lease.leaseId);
    assert.equal(renewedAgain.expired, false, "the holder's lease_id still renews after the restart");
    assert.ok(ms(renewedAgain.expiresAt) > ms(renewed.expiresAt), "the renewed expiry moved forward");
    streamAgain.end();
    assert.equal(await healthCheck(second.grpcAddress, LOCK_SERVICE), "SERVING");

    assert.equal(await second.stop("SIGTERM"), 0, `SIGTERM exits 0 (stderr:\n${second.stderr()})`);
    // A graceful stop leaves the live lease's file for the next start.
    assert.equal((await assertValidLeaseFile(join(lockDir, "e2e.lock"))).holder, "holder-e2e");
  } finally {
    await deployment.close();
  }
}
