// ForceRelease against the real service: a holder under `mcp-lockd run` is
// stopped and the next waiter is granted with a higher token; a lease taken
// through the file protocol alone is removed; bad input is refused. On
// either store (lease files, etcd), the file protocol on lease files only.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { startServiceUnderTest, storesUnderTest, type ServiceUnderTest } from "../helpers/service-under-test.ts";
import { LockClient } from "../../src/client/index.ts";
import { clientCliCommand, cliEnv, runClientCli } from "../cli/client-cli.ts";
import { expectGrpcError } from "../helpers/lock-client.ts";
import { exists } from "../helpers/fs.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";

const seconds = (s: number) => ({ seconds: s, nanos: 0 });

for (const kind of storesUnderTest()) describe(`ForceRelease (${kind} store)`, () => {
  let fixture: ServiceUnderTest;

  before(async () => {
    fixture = await startServiceUnderTest(kind);
  });

  after(() => fixture?.close());

  test("a holder under `mcp-lockd run` is stopped (exit 76) and the waiter is granted with a higher token", async () => {
    const { client, service } = fixture;
    const env = cliEnv({ MCP_LOCKD_ADDRESS: service.grpcAddress });
    const { command, args } = clientCliCommand(["run", "deploy", "--ttl", "3s", "--holder", "stuck-deploy", "--", "sleep", "60"]);
    const holder = spawn(command, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let holderStderr = "";
    holder.stderr!.setEncoding("utf8").on("data", (chunk: string) => (holderStderr += chunk));
    const exited = once(holder, "exit");
    try {
      await waitFor(async () => (await client.listLocks()).locks.some((l) => l.holder === "stuck-deploy"), "run to hold the lock");
      const held = (await client.listLocks()).locks[0]!;
      const waiting = client.acquire({ resource: "deploy", holder: "next", ttl: seconds(10), waitTimeout: seconds(30) });

      const forced = await runClientCli(["release", "--force", "deploy", "--reason", "deploy wedged on a lock"], { address: service.grpcAddress });
      assert.equal(forced.code, 0, forced.stderr);
      assert.match(forced.stdout, new RegExp(`released "deploy" \\(fencing token ${held.fencingToken}\\)`));

      const { lease } = await withTimeout(waiting, 10_000, "the waiter to be granted");
      assert.ok(lease!.fencingToken > held.fencingToken, `token ${lease!.fencingToken} > ${held.fencingToken}`);
      const [code] = await withTimeout(exited, 10_000, "run to stop its command");
      assert.equal(code, 76, holderStderr);
      assert.match(holderStderr, /lost/i);
      assert.match(logMessages(service.stderr()), /force-release of "deploy" by "anonymous \(no --auth-file\)": removed "stuck-deploy" \(fencing token \d+\); reason: "deploy wedged on a lock"/);
      await client.release(lease!.leaseId);
    } finally {
      holder.kill("SIGKILL");
    }
  });

  test("a lease taken through the file protocol alone is removed; the next grant's token is higher", { skip: kind !== "file" && "lease files only" }, async () => {
    const { client } = fixture;
    const lockDir = fixture.store.lockDir!;
    const now = Date.now();
    const leaseFile = join(lockDir, "by-hand.lock");
    await writeFile(
      leaseFile,
      JSON.stringify({
        version: 1, resource: "by-hand", holder: "a script", acquired_at: new Date(now).toISOString(),
        ttl: 600, expires_at: new Date(now + 600_000).toISOString(), fencing_token: 41, pid: 1, hostname: hostname(), metadata: {},
      }),
    );
    await waitFor(async () => (await client.listLocks()).locks.some((l) => l.resource === "by-hand"), "the service to see the file");
    // A watcher is told what happened, as FORCE_RELEASED.
    const watcher = new LockClient({ address: fixture.service.grpcAddress });
    const stopWatching = new AbortController();
    let snapshotSeen!: () => void;
    const snapshotDone = new Promise<void>((resolve) => (snapshotSeen = resolve));
    const seen = (async () => {
      for await (const event of watcher.watch("by-hand", { signal: stopWatching.signal })) {
        if (event.type === "SNAPSHOT_COMPLETE") snapshotSeen();
        if (event.type === "FORCE_RELEASED") return event;
      }
      return undefined;
    })().catch(() => undefined);
    await withTimeout(snapshotDone, 5_000, "the watch's snapshot");
    assert.deepEqual(await client.forceRelease("by-hand", "the script died"), { released: true, fencingToken: 41 });
    const event = await withTimeout(seen, 5_000, "the FORCE_RELEASED event");
    assert.equal(event?.resource, "by-hand");
    assert.equal(event?.holder, "a script");
    stopWatching.abort();
    watcher.close();
    assert.equal(await exists(leaseFile), false, "the lease file is gone");
    const { lease } = await client.acquire({ resource: "by-hand", ttl: seconds(5) });
    assert.ok(lease!.fencingToken > 41);
    await client.release(lease!.leaseId);
  });

  test("a free resource is not released; bad resource or reason is INVALID_ARGUMENT", async () => {
    const { client } = fixture;
    assert.deepEqual(await client.forceRelease("never-held", "x"), { released: false, fencingToken: 0 });
    await expectGrpcError(client.forceRelease("../etc", "x"), status.INVALID_ARGUMENT, [/\bresource\b/]);
    await expectGrpcError(client.forceRelease("ok", "a\nb"), status.INVALID_ARGUMENT, [/\breason\b/, "control"]);
    await expectGrpcError(client.forceRelease("ok", "r".repeat(2000)), status.INVALID_ARGUMENT, [/\breason\b/, "1024"]);
  });
});

/** The messages of the service's log, whether it writes JSON lines or text. */
function logMessages(stderr: string): string {
  return stderr
    .split("\n")
    .map((line) => {
      try {
        return String((JSON.parse(line) as { msg?: unknown }).msg ?? line);
      } catch {
        return line;
      }
    })
    .join("\n");
}
