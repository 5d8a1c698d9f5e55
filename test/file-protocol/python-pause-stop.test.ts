// Issue 14's reproduction between the two implementations of the file
// protocol, with real processes: the Python participant (file_lock.py) is
// frozen with SIGSTOP inside its guard while the service breaks the guard and
// takes the resource, and the other way round. Each stops itself at the exact
// step through its test hook (MCP_LOCKD_TEST_STOP_AT: right after taking the
// guard, after writing its temp file, right before its commit) and stays
// stopped 11.5 s, past the guard's 10 s staleness. After SIGCONT the stopped
// one must not issue a token twice or below the one issued meanwhile, nor
// commit over the other's lease: it finds the resource busy.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { lstat, readFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { readFenceToken } from "../helpers/fence.ts";
import { expectGrpcError, TestLockClient } from "../helpers/lock-client.ts";
import { PyDriver } from "../helpers/python-file-driver.ts";
import { startServiceProcess, type ServiceProcess } from "../helpers/service-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";

const POINTS = ["guard", "temp", "commit"] as const;
const STOPPED_MS = 11_500;

/** The one-letter state in /proc/PID/stat: "T" when stopped. */
async function processState(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

/**
 * Waits until `pid` has stopped itself inside the guard of r0; returns when
 * (Date.now()) and when its guard was made (the guard's mtime): nobody may
 * break it until 10 s after that.
 */
async function stopped(pid: number, point: string, lockDir: string): Promise<{ stoppedAt: number; guardMadeAt: number }> {
  await waitFor(async () => (await processState(pid)) === "T", `the process stopping itself at ${point}`, 10_000, 5);
  const stoppedAt = Date.now();
  return { stoppedAt, guardMadeAt: (await lstat(join(lockDir, "r0.lock.guard"))).mtimeMs };
}

async function keepStoppedUntil(stoppedAt: number): Promise<void> {
  const left = STOPPED_MS - (Date.now() - stoppedAt);
  if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
}

/**
 * Runs `body` with a service and a file_lock.py driver (its environment plus `pyEnv`) on one temp lock
 * dir; afterwards the driver is woken and killed, the service killed and the dir removed.
 */
async function withServiceAndStoppablePython(
  pyEnv: Record<string, string>,
  body: (lockDir: string, service: ServiceProcess, client: TestLockClient, py: PyDriver) => Promise<void>,
): Promise<void> {
  const temp = await makeTempDir();
  let service: ServiceProcess | undefined;
  let py: PyDriver | undefined;
  let client: TestLockClient | undefined;
  try {
    service = await startServiceProcess({ lockDir: temp.path });
    client = new TestLockClient(service.grpcAddress);
    py = PyDriver.start(temp.path, pyEnv);
    await body(temp.path, service, client, py);
  } finally {
    client?.close();
    if (py) {
      py.child.kill("SIGCONT");
      py.child.kill("SIGKILL");
    }
    await service?.stop("SIGKILL");
    await temp.remove();
  }
}

describe("a file-protocol process and the service, each stopped inside the guard past its staleness", { concurrency: true }, () => {
  for (const point of POINTS) {
    test(`python stopped at "${point}" while the service takes r0: no token twice or below, nothing committed over the service's lease`, { timeout: 60_000 }, async () => {
      await withServiceAndStoppablePython({ MCP_LOCKD_TEST_STOP_AT: `${point}:r0` }, async (lockDir, _service, client, py) => {
        const first = py.call({ op: "acquire", resource: "r0", holder: "py-first", ttl: 30 });
        const { stoppedAt, guardMadeAt } = await stopped(py.child.pid!, point, lockDir);

        const second = await withTimeout(client.acquire({ resource: "r0", holder: "svc-second", ttl: { seconds: 30, nanos: 0 } }), 25_000, "the service's grant");
        assert.ok(Date.now() - guardMadeAt >= 10_000, "the guard was broken only once stale");
        const secondToken = Number(second.lease!.fencingToken);
        const secondFile = await readFile(join(lockDir, "r0.lock"), "utf8");
        await keepStoppedUntil(stoppedAt);
        py.child.kill("SIGCONT");

        const reply = await withTimeout(first, 15_000, "python's answer after SIGCONT");
        assert.equal(reply.error, "ResourceBusyError", JSON.stringify(reply));
        assert.equal(reply.state?.holder, "svc-second");
        assert.equal(await readFile(join(lockDir, "r0.lock"), "utf8"), secondFile, "the service's lease file is intact");
        assert.equal(await readFenceToken(lockDir, "r0"), secondToken, "no token was issued after the service's");
        if (point === "commit") assert.equal(secondToken, 2, "python's own token 1 was issued before it stopped, then burnt");

        await client.release(second.lease!.leaseId);
        const third = await py.call({ op: "acquire", resource: "r0", holder: "py-third", ttl: 30 });
        assert.ok(third.ok && third.lease!.fencing_token > secondToken, JSON.stringify(third));
      });
    });

    test(`service stopped at "${point}" while python takes r0: no token twice or below, nothing committed over python's lease`, { timeout: 60_000 }, async () => {
      const temp = await makeTempDir();
      let service: ServiceProcess | undefined;
      let py: PyDriver | undefined;
      let client: TestLockClient | undefined;
      try {
        service = await startServiceProcess({ lockDir: temp.path, env: { MCP_LOCKD_TEST_STOP_AT: `${point}:r0` } });
        client = new TestLockClient(service.grpcAddress);
        py = PyDriver.start(temp.path);
        const first = client.acquire({ resource: "r0", holder: "svc-first", ttl: { seconds: 30, nanos: 0 } }).then(
          (response) => ({ response }),
          (error: unknown) => ({ error }),
        );
        const { stoppedAt, guardMadeAt } = await stopped(service.child.pid!, point, temp.path);

        // Python waits for the guard until it is stale (10 s), breaks it and takes r0.
        const second = await withTimeout(py.call({ op: "acquire", resource: "r0", holder: "py-second", ttl: 30, wait_timeout: 20 }), 25_000, "python's grant");
        assert.ok(second.ok && second.lease, JSON.stringify(second));
        assert.ok(Date.now() - guardMadeAt >= 10_000, "the guard was broken only once stale");
        const secondToken = second.lease.fencing_token;
        const secondFile = await readFile(join(temp.path, "r0.lock"), "utf8");
        await keepStoppedUntil(stoppedAt);
        service.child.kill("SIGCONT");

        const outcome = await withTimeout(first, 15_000, "the service's answer after SIGCONT");
        if ("response" in outcome) assert.fail(`the stopped service granted r0 (token ${outcome.response.lease?.fencingToken}) over python's live lease`);
        await expectGrpcError(Promise.reject(outcome.error), status.ABORTED, []);
        assert.equal(await readFile(join(temp.path, "r0.lock"), "utf8"), secondFile, "python's lease file is intact");
        assert.equal(await readFenceToken(temp.path, "r0"), secondToken, "no token was issued after python's");
        if (point === "commit") assert.equal(secondToken, 2, "the service's own token 1 was issued before it stopped, then burnt");

        const released = await py.call({ op: "release", fencing_token: secondToken });
        assert.equal(released.released, true, JSON.stringify(released));
        const third = await client.acquire({ resource: "r0", holder: "svc-third", waitTimeout: { seconds: 5, nanos: 0 } });
        assert.ok(Number(third.lease!.fencingToken) > secondToken, "tokens keep increasing");
      } finally {
        client?.close();
        if (service) {
          service.child.kill("SIGCONT");
          await service.stop("SIGKILL");
        }
        py?.child.kill("SIGKILL");
        await temp.remove();
      }
    });
  }
});

// Version 3: a renewal in place takes no guard. Python is frozen right before its pwrite (after its
// identity check) until its lease has expired and the service has granted r1 to someone else (a new
// file renamed over the name). After SIGCONT its write lands on the unlinked inode: the renewal is
// lost, and the service's lease file is not touched.
test("python stopped right before an in-place renewal's write while the service grants r1 after its expiry: lost, the service's file intact", { timeout: 30_000 }, async () => {
  await withServiceAndStoppablePython({ MCP_LOCKD_TEST_STOP_AT: "in-place:r1" }, async (lockDir, _service, client, py) => {
    const held = await py.call({ op: "acquire", resource: "r1", holder: "py-first", ttl: 1 });
    assert.ok(held.ok && held.lease, JSON.stringify(held));
    const renewal = py.call({ op: "renew", fencing_token: held.lease.fencing_token });
    await waitFor(async () => (await processState(py.child.pid!)) === "T", "python stopping itself before its in-place write", 10_000, 5);

    const second = await withTimeout(
      client.acquire({ resource: "r1", holder: "svc-second", ttl: { seconds: 30, nanos: 0 }, waitTimeout: { seconds: 10, nanos: 0 } }),
      15_000,
      "the service's grant after python's expiry",
    );
    assert.ok(Date.now() >= held.lease.expires_at, "granted only once python's lease had expired");
    assert.equal(Number(second.lease!.fencingToken), held.lease.fencing_token + 1);
    const secondFile = await readFile(join(lockDir, "r1.lock"));
    py.child.kill("SIGCONT");

    const reply = await withTimeout(renewal, 10_000, "python's answer after SIGCONT");
    assert.equal(reply.error, "LeaseLostError", JSON.stringify(reply));
    assert.match(reply.message ?? "", /replaced/); // its inode was unlinked when it wrote
    assert.deepEqual(await readFile(join(lockDir, "r1.lock")), secondFile, "the service's lease file is intact");
    const released = await py.call({ op: "release", fencing_token: held.lease.fencing_token });
    assert.equal(released.released, false, "python's release leaves the service's lease alone");
    assert.equal((await client.listLocks("r1")).locks[0]?.holder, "svc-second");
  });
});
