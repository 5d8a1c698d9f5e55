// The Python gRPC client (clients/python, mcp_lockd.LockClient) against the
// real service as a child process: typed exceptions, lease.lost when the lease
// is deleted behind its back or the service stays down past the ttl, and a
// lease that survives a SIGKILL and restart of the service without being lost.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { unlink } from "node:fs/promises";
import { join } from "node:path";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { startServiceFixture, startServiceProcess, type ServiceProcess } from "../helpers/service-process.ts";
import { ms } from "../helpers/lock-client.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";
import { PYTHON, PYTHON_PACKAGE_DIR, PythonLeaseDriver } from "./python-lease-driver.ts";

const seconds = (s: number) => ({ seconds: Math.floor(s), nanos: Math.round((s - Math.floor(s)) * 1e9) });

/** A loopback port with nothing listening on it (taken, then freed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

test("python LockClient: busy, invalid and unavailable become ResourceBusyError, InvalidArgumentError, UnavailableError", async () => {
  const { service, client, close } = await startServiceFixture();
  const py = await PythonLeaseDriver.start("grpc", service.grpcAddress);
  const nowhere = await PythonLeaseDriver.start("grpc", `127.0.0.1:${await closedPort()}`, { connect_timeout: 1 });
  try {
    // A non-ASCII holder travels in binary trailing metadata.
    const holder = "ts-höld€r ✓";
    const { lease } = await client.acquire({ resource: "busy", holder, ttl: seconds(30) });
    assert.ok(lease);

    const busy = await py.call({ op: "lock", id: "b1", resource: "busy", ttl: 5 });
    assert.equal(busy.error, "ResourceBusyError", JSON.stringify(busy));
    assert.equal(busy.is_lock_error, true);
    assert.equal(busy.holder, holder);
    assert.equal(busy.expires_at, ms(lease.expiresAt));
    assert.equal(busy.code, "ABORTED");

    // Waiting that runs out is busy too, and really waited.
    const started = Date.now();
    const waited = await py.call({ op: "lock", id: "b2", resource: "busy", ttl: 5, wait: 0.5 });
    assert.equal(waited.error, "ResourceBusyError", JSON.stringify(waited));
    assert.ok(Date.now() - started >= 500, `gave up after ${Date.now() - started} ms`);
    assert.equal(waited.holder, holder);

    // Invalid arguments, found by the service, name the field.
    const badName = await py.call({ op: "lock", id: "i1", resource: "../etc/passwd", ttl: 5 });
    assert.equal(badName.error, "InvalidArgumentError", JSON.stringify(badName));
    assert.equal(badName.field, "resource");
    const badTtl = await py.call({ op: "lock", id: "i2", resource: "fine", ttl: 7200 });
    assert.equal(badTtl.error, "InvalidArgumentError", JSON.stringify(badTtl));
    assert.equal(badTtl.field, "ttl");
    assert.match(badTtl.message ?? "", /ttl/);
    // ... and by the client, before any call.
    const zeroTtl = await py.call({ op: "lock", id: "i3", resource: "fine", ttl: 0 });
    assert.equal(zeroTtl.error, "InvalidArgumentError", JSON.stringify(zeroTtl));
    const badWait = await py.call({ op: "lock", id: "i4", resource: "fine", ttl: 5, wait: -1 });
    assert.equal(badWait.error, "InvalidArgumentError", JSON.stringify(badWait));

    // Nothing listening: UnavailableError once connect_timeout has passed.
    const down = await nowhere.call({ op: "lock", id: "u1", resource: "fine", ttl: 5 });
    assert.equal(down.error, "UnavailableError", JSON.stringify(down));
    assert.equal(down.is_lock_error, true);
    const downList = await nowhere.call({ op: "list" });
    assert.equal(downList.error, "UnavailableError", JSON.stringify(downList));

    // None of that left anything held but the TS lease.
    const listed = await py.ok({ op: "list" });
    assert.deepEqual(
      listed.locks!.map((l) => [l.resource, l.holder, l.fencing_token, l.state]),
      [["busy", holder, lease.fencingToken, "held"]],
    );
  } finally {
    await Promise.all([py.close(), nowhere.close()]);
    await close();
  }
});

test("python LockClient: lease.lost fires at the next renewal when the lease file is deleted behind its back", async (t) => {
  const { dir, service, client, close } = await startServiceFixture();
  const py = await PythonLeaseDriver.start("grpc", service.grpcAddress);
  try {
    const TTL = 3;
    const granted = await py.ok({ op: "lock", id: "a", resource: "deleted", ttl: TTL });
    const deletedAt = Date.now();
    await unlink(join(dir, "deleted.lock"));
    const lost = await withTimeout(py.lost("a"), 10_000, "lease.lost after the lease file was deleted");
    t.diagnostic(`lost ${lost.at - deletedAt} ms after the deletion (renewals every ${(TTL * 1000) / 3} ms)`);
    assert.equal(lost.reason, "expired");
    // At the next renewal (at most ttl/3 away, plus slack), well before the last confirmed expiry.
    assert.ok(lost.at - deletedAt <= (TTL * 1000) / 3 + 1_000, `lost ${lost.at - deletedAt} ms after the deletion`);
    assert.ok(lost.at <= lost.expires_at, `lost at ${lost.at}, after its last confirmed expiry ${lost.expires_at}`);
    assert.ok(lost.expires_at <= granted.lease!.expires_at + TTL * 1000);

    // Leaving the block says so, and the resource is free for others.
    const released = await py.call({ op: "release", id: "a" });
    assert.equal(released.error, "LeaseLostError", JSON.stringify(released));
    assert.equal(released.reason, "expired");
    const { lease } = await client.acquire({ resource: "deleted", holder: "ts-next" });
    assert.ok(lease && lease.fencingToken > granted.lease!.fencing_token);
  } finally {
    await py.close();
    await close();
  }
});

test("python LockClient: lease.lost fires no later than the last confirmed expiry when the service stays down", async (t) => {
  const dir = await makeTempDir();
  const service = await startServiceProcess({ lockDir: dir.path });
  const py = await PythonLeaseDriver.start("grpc", service.grpcAddress);
  try {
    const TTL = 2;
    await py.ok({ op: "lock", id: "a", resource: "down", ttl: TTL });
    // Steady state: a renewal has been confirmed over the KeepAlive stream.
    await waitFor(async () => ((await py.ok({ op: "state", id: "a" })).renewals_confirmed ?? 0) >= 1, "a confirmed renewal");
    const killedAt = Date.now();
    await service.stop("SIGKILL");
    const lost = await withTimeout(py.lost("a"), 10_000, "lease.lost while the service is down");
    t.diagnostic(`lost ${lost.at - killedAt} ms after the SIGKILL (ttl ${TTL * 1000} ms); ${lost.expires_at - lost.at} ms before its last confirmed expiry`);
    assert.equal(lost.reason, "unconfirmed");
    // Never later than the last confirmed expiry, which was confirmed before the kill.
    assert.ok(lost.at <= lost.expires_at, `lost at ${lost.at}, after its last confirmed expiry ${lost.expires_at}`);
    assert.ok(lost.at <= killedAt + TTL * 1000, `lost ${lost.at - killedAt} ms after the kill, ttl ${TTL * 1000} ms`);
    // Not much earlier either: the last renewal was at most ttl/3 (+ slack) before the kill.
    assert.ok(lost.at >= killedAt + (TTL * 1000 * 2) / 3 - 500, `lost only ${lost.at - killedAt} ms after the kill`);

    const released = await py.call({ op: "release", id: "a" });
    assert.equal(released.error, "LeaseLostError", JSON.stringify(released));
    assert.equal(released.reason, "unconfirmed");
  } finally {
    await py.close();
    await service.stop("SIGKILL");
    await dir.remove();
  }
});

test("python LockClient: a lease survives a SIGKILL and restart of the service (same port, same lock dir) without lost", async (t) => {
  const dir = await makeTempDir();
  const services: ServiceProcess[] = [];
  const start = async (grpcListen?: string) => {
    const s = await startServiceProcess({ lockDir: dir.path, grpcListen });
    services.push(s);
    return s;
  };
  const first = await start();
  const py = await PythonLeaseDriver.start("grpc", first.grpcAddress);
  try {
    const TTL = 3;
    const granted = await py.ok({ op: "lock", id: "a", resource: "survivor", ttl: TTL, holder: "py-survivor" });
    await waitFor(async () => ((await py.ok({ op: "state", id: "a" })).renewals_confirmed ?? 0) >= 1, "a confirmed renewal");
    const killedAt = Date.now();
    await first.stop("SIGKILL");
    const before = await py.ok({ op: "state", id: "a" });
    const second = await start(first.grpcAddress);
    const restartedAt = Date.now();

    // The client reconnects and renews on the restarted service.
    let firstRenewalAfterRestart = 0;
    await waitFor(
      async () => {
        const s = await py.ok({ op: "state", id: "a" });
        if (!firstRenewalAfterRestart && (s.renewals_confirmed ?? 0) > (before.renewals_confirmed ?? 0)) {
          firstRenewalAfterRestart = Date.now();
        }
        return (s.renewals_confirmed ?? 0) >= (before.renewals_confirmed ?? 0) + 4 && Date.now() > killedAt + TTL * 1000 + 500;
      },
      "renewals on the restarted service, past the ttl counted from the kill",
      20_000,
      50,
    );
    t.diagnostic(
      `service down for ${restartedAt - killedAt} ms; first renewal confirmed by the restarted service ` +
        `${firstRenewalAfterRestart - restartedAt} ms after it served`,
    );
    const state = await py.ok({ op: "state", id: "a" });
    assert.equal(state.lost, false, JSON.stringify(state));
    assert.equal(py.lostSoFar("a"), undefined);
    assert.ok((state.streams_opened ?? 0) >= 2, `streams opened: ${state.streams_opened}`);
    assert.ok(state.expires_at! > killedAt + TTL * 1000, "the lease was renewed past the ttl counted from the kill");

    // The restarted service has the same lease, renewed.
    const listed = await py.ok({ op: "list", prefix: "survivor" });
    assert.equal(listed.locks!.length, 1);
    assert.equal(listed.locks![0]!.holder, "py-survivor");
    assert.equal(listed.locks![0]!.fencing_token, granted.lease!.fencing_token);
    assert.ok(listed.locks![0]!.expires_at > killedAt + TTL * 1000);

    // Its id never showed in repr() or in the client's log (the reconnection was logged).
    const secrets = await py.ok({ op: "secrets", id: "a" });
    assert.equal(secrets.has_lease_id, true);
    assert.deepEqual(secrets.leaked_in, []);
    assert.ok((secrets.log_lines ?? 0) >= 1, "the reconnection was logged");

    await py.ok({ op: "release", id: "a" });
    assert.deepEqual((await py.ok({ op: "list" })).locks, []);
    void second;
  } finally {
    await py.close();
    for (const s of services) await s.stop("SIGKILL");
    await dir.remove();
  }
});

/** Runs a short Python program that imports mcp_lockd from clients/python. */
function spawnPython(code: string, env: Record<string, string>) {
  return spawn(PYTHON, ["-c", code], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, PYTHONPATH: PYTHON_PACKAGE_DIR, PYTHONDONTWRITEBYTECODE: "1", ...env },
  });
}

async function outputOf(child: ReturnType<typeof spawnPython>): Promise<{ code: number | null; signal: string | null; out: string }> {
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  const [code, signal] = (await once(child, "exit")) as [number | null, string | null];
  return { code, signal, out };
}

test("python LockClient: Ctrl-C while waiting leaves the queue; leases still held at interpreter exit are released", async () => {
  const { service, client, close } = await startServiceFixture();
  try {
    const { lease } = await client.acquire({ resource: "queue", holder: "ts-holder", ttl: seconds(30) });
    assert.ok(lease);
    const waiter = spawnPython(
      `
import sys
from mcp_lockd import LockClient
try:
    LockClient().acquire("queue", ttl=5, wait=60)
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(130)
`,
      { MCP_LOCKD_ADDRESS: service.grpcAddress },
    );
    const waited = outputOf(waiter);
    const waiters = async () => (await client.listLocks("queue")).locks[0]?.waiters ?? 0;
    await waitFor(async () => (await waiters()) === 1, "the python waiter to be queued", 20_000);
    waiter.kill("SIGINT");
    const result = await withTimeout(waited, 10_000, "the interrupted python waiter to exit");
    assert.equal(result.code, 130, result.out);
    assert.match(result.out, /^interrupted$/m);
    await waitFor(async () => (await waiters()) === 0, "the queue to be empty");
    assert.deepEqual(await client.release(lease.leaseId), { released: true });

    // A program that ends while holding a lease (no `with`, no release()) gives it back on exit.
    const holder = spawnPython(
      `
from mcp_lockd import LockClient
lease = LockClient().acquire("left-held", ttl=60, holder="py-exit")
print(lease.fencing_token)
`,
      { MCP_LOCKD_ADDRESS: service.grpcAddress },
    );
    const exited = await withTimeout(outputOf(holder), 20_000, "the python holder to exit");
    assert.equal(exited.code, 0, exited.out);
    assert.match(exited.out.trim(), /^\d+$/);
    assert.deepEqual((await client.listLocks("left-held")).locks, []);
  } finally {
    await close();
  }
});
