// `mcp-lockd status`, `acquire`, `renew` and `release` as scripts use them,
// against a real service; exit codes for usage errors (64), an unreachable
// service (69), busy (75) and gone leases (76).
import { newLeaseId } from "../../src/core/lease-id.ts";
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServiceFixture, type ServiceFixture } from "../helpers/service-process.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";
import { runClientCli, startClientCli } from "./client-cli.ts";

async function withService(fn: (fx: ServiceFixture) => Promise<void>): Promise<void> {
  const fx = await startServiceFixture({ lockSubdir: "locks" });
  try {
    await fn(fx);
  } finally {
    await fx.close();
  }
}

/** KEY=value lines as `acquire` prints them. */
function parseLines(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.trim().split("\n")) {
    const match = /^(MCP_LOCKD_[A-Z_]+)=([A-Za-z0-9_.:-]+)$/.exec(line);
    assert.ok(match, `a shell-safe KEY=value line: ${JSON.stringify(line)}`);
    out[match[1]!] = match[2]!;
  }
  return out;
}

/** Runs a command with `input` on its stdin. */
async function withStdin(args: string[], address: string, input: string) {
  const cli = startClientCli(args, { address, stdin: "pipe" });
  cli.child.stdin!.end(input);
  const exit = await withTimeout(cli.exited, 20_000, `mcp-lockd ${args.join(" ")}`);
  return { code: exit.code, stdout: cli.stdout(), stderr: cli.stderr() };
}

test("status: a table of held locks, or JSON in the shape of /health/locks, never a lease id", async () => {
  await withService(async (fx) => {
    const address = fx.service.grpcAddress;
    const empty = await runClientCli(["status"], { address });
    assert.equal(empty.code, 0, empty.stderr);
    assert.equal(empty.stdout, "no locks held\n");
    assert.deepEqual(JSON.parse((await runClientCli(["status", "--json"], { address })).stdout), { locks: [] });

    const { lease: gateway } = await fx.client.acquire({ resource: "gateway", holder: "ci-42", ttl: { seconds: 300, nanos: 0 }, metadata: { job: "build" } });
    const { lease: db } = await fx.client.acquire({ resource: "db-migrate", holder: "alice", ttl: { seconds: 60, nanos: 0 } });
    assert.ok(gateway && db);
    const waiter = fx.client.acquire({ resource: "gateway", holder: "w", waitTimeout: { seconds: 30, nanos: 0 } }).catch((err: unknown) => err);
    await waitFor(async () => (await fx.client.listLocks("gateway")).locks[0]?.waiters === 1, "the waiter to queue");

    const table = await runClientCli(["status"], { address });
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /^RESOURCE +HOLDER +HELD FOR +TTL +EXPIRES IN +FENCING TOKEN +WAITERS$/);
    assert.match(lines[1]!, new RegExp(`^db-migrate +alice +\\d+(ms|s) +1m00s +\\d+s +${db.fencingToken} +0$`));
    assert.match(lines[2]!, new RegExp(`^gateway +ci-42 +\\d+(ms|s) +5m00s +4m5\\ds +${gateway.fencingToken} +1$`));
    assert.equal(lines.length, 3);

    const json = await runClientCli(["status", "--json", "gate"], { address });
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as { locks: Array<Record<string, unknown>> };
    assert.equal(parsed.locks.length, 1, "the prefix filters");
    const entry = parsed.locks[0]!;
    assert.deepEqual(Object.keys(entry).sort(), ["acquired_at", "expires_at", "fencing_token", "holder", "metadata", "resource", "state", "ttl", "waiters"]);
    assert.deepEqual(
      { resource: entry.resource, holder: entry.holder, ttl: entry.ttl, fencing_token: entry.fencing_token, waiters: entry.waiters, state: entry.state, metadata: entry.metadata },
      { resource: "gateway", holder: "ci-42", ttl: 300, fencing_token: Number(gateway.fencingToken), waiters: 1, state: "held", metadata: { job: "build" } },
    );
    for (const output of [table.stdout, json.stdout, (await runClientCli(["status", "--json"], { address })).stdout]) {
      assert.ok(!output.includes(gateway.leaseId) && !output.includes(db.leaseId), "no lease id in any listing");
    }
    await fx.client.release(gateway.leaseId);
    const granted = await waiter;
    await fx.client.release(db.leaseId);
    if (typeof granted === "object" && granted !== null && "lease" in granted) {
      await fx.client.release((granted as { lease: { leaseId: string } }).lease.leaseId);
    }
  });
});

test("acquire prints the lease for a script; it stays held after acquire exits; renew and release by MCP_LOCKD_LEASE_ID or stdin", async () => {
  await withService(async (fx) => {
    const address = fx.service.grpcAddress;
    const acquired = await runClientCli(["acquire", "deploy", "--ttl", "20s", "--holder", "deploy-script"], { address });
    assert.equal(acquired.code, 0, acquired.stderr);
    assert.equal(acquired.stderr, "", "nothing on stderr: the lease id goes to stdout only");
    const lease = parseLines(acquired.stdout);
    assert.deepEqual(Object.keys(lease), ["MCP_LOCKD_RESOURCE", "MCP_LOCKD_LEASE_ID", "MCP_LOCKD_FENCING_TOKEN", "MCP_LOCKD_EXPIRES_AT"]);
    assert.equal(lease.MCP_LOCKD_RESOURCE, "deploy");
    assert.match(lease.MCP_LOCKD_LEASE_ID!, /^[A-Za-z0-9_-]{43}$/);
    const expiresAt = Date.parse(lease.MCP_LOCKD_EXPIRES_AT!);
    assert.ok(expiresAt > Date.now() + 10_000, "expires about 20 s from now");

    // acquire has exited: the lease is still held, by the holder it named.
    const listed = (await fx.client.listLocks("deploy")).locks[0];
    assert.equal(listed?.holder, "deploy-script");
    assert.equal(String(listed?.fencingToken), lease.MCP_LOCKD_FENCING_TOKEN);

    const env = { MCP_LOCKD_LEASE_ID: lease.MCP_LOCKD_LEASE_ID! };
    const renewed = await runClientCli(["renew"], { address, env });
    assert.equal(renewed.code, 0, renewed.stderr);
    const renewedAt = Date.parse(parseLines(renewed.stdout).MCP_LOCKD_EXPIRES_AT!);
    assert.ok(renewedAt >= expiresAt, "renew moves the expiry on");
    const renewedJson = JSON.parse((await runClientCli(["renew", "--json"], { address, env })).stdout) as { expires_at: string; ttl: number };
    assert.equal(renewedJson.ttl, 20);

    const busy = await runClientCli(["acquire", "deploy", "--wait", "0"], { address });
    assert.equal(busy.code, 75, busy.stderr);
    assert.match(busy.stderr, /"deploy" is held by "deploy-script"/);
    assert.equal(busy.stdout, "");

    const released = await runClientCli(["release"], { address, env });
    assert.equal(released.code, 0, released.stderr);
    assert.equal(released.stdout + released.stderr, "", "release is silent on success");
    assert.equal((await fx.client.listLocks("deploy")).locks.length, 0);
    const again = await runClientCli(["release"], { address, env });
    assert.equal(again.code, 76, "releasing it again: the lease is not live");
    assert.match(again.stderr, /not live/);
    assert.equal((await runClientCli(["renew"], { address, env })).code, 76, "renewing a released lease: 76");

    // --json, released through stdin (not visible in ps).
    const asJson = await runClientCli(["acquire", "deploy", "--json", "--ttl", "5s"], { address });
    assert.equal(asJson.code, 0, asJson.stderr);
    const doc = JSON.parse(asJson.stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(doc).sort(), ["expires_at", "fencing_token", "holder", "lease_id", "resource", "ttl"]);
    assert.ok((doc.fencing_token as number) > Number(lease.MCP_LOCKD_FENCING_TOKEN), "a new grant, a higher token");
    assert.equal(doc.ttl, 5);
    const viaStdin = await withStdin(["release", "-"], address, asJson.stdout);
    assert.equal(viaStdin.code, 0, viaStdin.stderr);

    // The KEY=value output on stdin works too (`acquire > lease.env; release - < lease.env`).
    const third = await runClientCli(["acquire", "deploy"], { address });
    assert.equal((await withStdin(["release", "-"], address, third.stdout)).code, 0);
    assert.equal((await fx.client.listLocks("deploy")).locks.length, 0);
  });
});

test("release of a lease id the service does not know exits 76", async () => {
  await withService(async (fx) => {
    const unknown = newLeaseId(); // shaped like the ids the service issues
    const result = await runClientCli(["release", unknown], { address: fx.service.grpcAddress });
    assert.equal(result.code, 76, result.stderr);
    assert.ok(!result.stderr.includes(unknown), "the id is not echoed");
  });
});

test("an unreachable service exits 69 and says where it looked; the command does not run", async () => {
  const address = "127.0.0.1:1";
  for (const args of [["status"], ["acquire", "x", "--wait", "0"], ["release", newLeaseId()], ["run", "x", "--wait", "0", "--", "sh", "-c", "echo ran"]]) {
    const result = await runClientCli(args, { address });
    assert.equal(result.code, 69, `mcp-lockd ${args[0]}: exit 69 (stderr: ${result.stderr})`);
    assert.match(result.stderr, /is mcp-lockd serving on 127\.0\.0\.1:1\?/);
    assert.equal(result.stdout, "");
  }
});

test("usage errors exit 64 and say why; the service's INVALID_ARGUMENT too", async () => {
  await withService(async (fx) => {
    const address = fx.service.grpcAddress;
    const cases: Array<[string[], RegExp]> = [
      [["run", "res", "true"], /after --/],
      [["run", "--", "true"], /which resource/],
      [["run", "res", "--ttl", "soon", "--", "true"], /--ttl "soon"/],
      [["run", "../etc", "--", "true"], /resource/],
      [["run", "res", "--ttl", "500ms", "--", "true"], /ttl/],
      [["status", "a", "b"], /at most one/],
      [["status", "--bogus"], /bogus/],
      [["acquire"], /which resource/],
      [["acquire", "res", "--wait", "-1"], /--wait/],
      [["release"], /no lease id/],
      [["release", "not a lease id!"], /not a lease id/],
      [["renew", "a", "b"], /at most one/],
      [["status", "--address", "nonsense"], /--address/],
    ];
    for (const [args, message] of cases) {
      const result = await runClientCli(args, { address });
      assert.equal(result.code, 64, `mcp-lockd ${args.join(" ")}: exit 64 (stderr: ${result.stderr})`);
      assert.match(result.stderr, message, `mcp-lockd ${args.join(" ")} says why`);
    }
    assert.equal((await fx.client.listLocks()).locks.length, 0, "nothing was acquired");
  });
});

test("each client command has --help; run's --help after -- belongs to the command", async () => {
  for (const command of ["run", "status", "acquire", "renew", "release"]) {
    const result = await runClientCli([command, "--help"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^Usage:\\n {2}mcp-lockd ${command} `));
  }
  const general = await runClientCli(["--help"]);
  for (const text of ["mcp-lockd run RESOURCE", "mcp-lockd status", "MCP_LOCKD_ADDRESS", "Exit codes", "75", "76", "69"]) {
    assert.ok(general.stdout.includes(text), `--help mentions ${text}`);
  }
  // After --, --help is the command's: it runs (against nothing here: 69), run does not print its usage.
  const passed = await runClientCli(["run", "res", "--wait", "0", "--", "sh", "--help"], { address: "127.0.0.1:1" });
  assert.equal(passed.code, 69);
  assert.ok(!passed.stdout.includes("Usage:"));
});
