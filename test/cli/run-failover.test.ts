// `mcp-lockd run --address A,B` (two `mcp-lockd serve` on one lock dir stand
// in for replicas): when the replica it renews through is SIGKILLed, run
// renews through the other, says so, and the command goes on undisturbed; the
// lease is the same one and nobody else is granted it. The other client
// commands move past an address that is down.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { LockClient } from "../../src/index.ts";
import { exists } from "../helpers/fs.ts";
import { deadAddress, startReplicas } from "../helpers/replicas.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";
import { runClientCli, startClientCli } from "./client-cli.ts";

/** A node child that prints "ready", exits 0 on SIGUSR2 and notes a SIGTERM in `termFile`. */
function idleChild(termFile: string): string[] {
  const script = `
    process.on("SIGTERM", () => require("node:fs").writeFileSync(${JSON.stringify(termFile)}, "term"));
    process.on("SIGUSR2", () => process.exit(0));
    console.log("ready " + process.pid);
    setInterval(() => {}, 1000);
  `;
  return [process.execPath, "-e", script];
}

test("run --address A,B: A is SIGKILLed while the command runs; run renews through B, the command is undisturbed", async (t) => {
  const replicas = await startReplicas(2);
  const [a, b] = [replicas.services[0]!, replicas.services[1]!];
  const observer = new LockClient({ address: b.grpcAddress });
  const termFile = join(replicas.dir, "..term");
  const run = startClientCli(["run", "run-failover", "--ttl", "2s", "--holder", "cli-survivor", "--", ...idleChild(termFile)], {
    address: replicas.addressList,
  });
  let childPid: number | undefined;
  try {
    const ttl = 2_000;
    childPid = Number((await run.waitForStdout(/ready (\d+)/))[1]);
    const [before] = await observer.list("run-failover");
    assert.equal(before?.holder, "cli-survivor");
    const contender = observer.acquire("run-failover", { ttl: 5_000, wait: 30_000, holder: "contender" });
    let contenderGrantedAt: number | undefined;
    void contender.then(() => (contenderGrantedAt = Date.now()), () => {});
    await waitFor(async () => (await observer.list("run-failover"))[0]?.waiters === 1, "the contender waiting on B");

    const killedAt = Date.now();
    await a.stop("SIGKILL");
    await run.waitForStderr(new RegExp(`renewed "run-failover" through ${b.grpcAddress} \\(${a.grpcAddress} stopped answering\\)`), ttl);
    const movedAt = Date.now();
    // B keeps seeing renewals past the expiry the lease had at the kill.
    await waitFor(
      async () => ((await observer.list("run-failover"))[0]?.expiresAt.getTime() ?? 0) > killedAt + 2 * ttl,
      "renewals through B past the ttl",
      4 * ttl,
      50,
    );
    const [during] = await observer.list("run-failover");
    assert.equal(during?.fencingToken, before!.fencingToken, "the same lease, not a new grant");
    assert.equal(await exists(termFile), false, "the command got SIGTERM");
    assert.equal(contenderGrantedAt, undefined, "the contender was granted a held lease");

    const endedAt = Date.now();
    process.kill(childPid, "SIGUSR2");
    const exit = await run.exited;
    assert.equal(exit.code, 0, run.stderr());
    const next = await withTimeout(contender, 5_000, "the contender's grant after run released");
    assert.ok(next.fencingToken > before!.fencingToken);
    assert.ok(contenderGrantedAt! >= endedAt, "granted while run still held the lease");
    await next.release();
    t.diagnostic(`run: replica SIGKILL to run's "renewed through" line: ${movedAt - killedAt} ms (ttl ${ttl} ms)`);
  } finally {
    run.kill("SIGKILL");
    // The command runs in its own process group and holds run's stdout: it would outlive a failed test.
    try {
      if (childPid !== undefined) process.kill(-childPid, "SIGKILL");
    } catch {
      // already gone
    }
    observer.close();
    await replicas.close();
  }
});

test("acquire, renew, call and release with a dead first address use the next one", async () => {
  const replicas = await startReplicas(1);
  const address = `${await deadAddress()},${replicas.services[0]!.grpcAddress}`;
  try {
    const acquired = await runClientCli(["acquire", "via-second", "--ttl", "30s", "--wait", "0", "--json"], { address });
    assert.equal(acquired.code, 0, acquired.stderr);
    const leaseId = (JSON.parse(acquired.stdout) as { lease_id: string }).lease_id;
    const renewed = await runClientCli(["renew", leaseId], { address });
    assert.equal(renewed.code, 0, renewed.stderr);
    const called = await runClientCli(["call", "mcplockd.v1.LockService/ListLocks", "{}"], { address });
    assert.equal(called.code, 0, called.stderr);
    assert.match(called.stdout, /"via-second"/);
    const released = await runClientCli(["release", leaseId], { address });
    assert.equal(released.code, 0, released.stderr);
  } finally {
    await replicas.close();
  }
});
