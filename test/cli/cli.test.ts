// The mcp-lockd command line, run as real child processes: help, version,
// usage errors, configuration by environment and flags, and graceful exit on
// SIGTERM and SIGINT with leases held and callers waiting.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { CLI_PATH, startServiceProcess } from "../helpers/service-process.ts";
import { TestLockClient, isServiceError } from "../helpers/lock-client.ts";
import { assertValidLeaseFile } from "../helpers/lease-file-schema.ts";
import { runProcess, type ProcessResult } from "../helpers/run-process.ts";
import { waitFor } from "../helpers/wait.ts";
import { exists } from "../helpers/fs.ts";
import type { AcquireResponse } from "../../src/gen/mcplockd/v1/lock.ts";

const PACKAGE_JSON = new URL("../../../package.json", import.meta.url);

/** The test runner's environment without any MCP_LOCKD_* variable, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("MCP_LOCKD_")) env[key] = value;
  return { ...env, ...extra };
}

/** Runs the CLI to completion (killed after `timeoutMs`). */
function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<ProcessResult> {
  return runProcess(process.execPath, [CLI_PATH, ...args], {
    env: options.env ?? cleanEnv(),
    cwd: options.cwd,
    timeoutMs: options.timeoutMs ?? 15_000,
  });
}

/** Starts `serve` with only the given environment (no flags) and waits for its serving line. */
async function serveWithEnv(env: NodeJS.ProcessEnv, cwd: string): Promise<{ child: ChildProcess; line: string; stderr: () => string; stop(): Promise<number | null> }> {
  const child = spawn(process.execPath, [CLI_PATH, "serve"], { stdio: ["ignore", "pipe", "pipe"], env, cwd });
  let stdout = "";
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = once(child, "exit").then(([code]) => code as number | null);
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    return exited;
  };
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  try {
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        stdout += chunk;
        const match = /^mcp-lockd serving .*$/m.exec(stdout);
        if (match) resolve(match[0]);
      });
      void exited.then((code) => reject(new Error(`mcp-lockd exited (${code}) before serving:\n${stderr}`)));
    });
    return { child, line, stderr: () => stderr, stop };
  } catch (err) {
    await stop();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

test("--help prints usage naming loopback defaults and exits 0", async () => {
  for (const flag of ["--help", "-h", "help"]) {
    const { code, stdout, stderr } = await runCli([flag]);
    assert.equal(code, 0, `${flag} exits 0 (stderr: ${stderr})`);
    assert.match(stdout, /Usage:/);
    assert.match(stdout, /mcp-lockd serve/);
    for (const name of ["--lock-dir", "--grpc-listen", "--http-listen", "MCP_LOCKD_DIR", "MCP_LOCKD_GRPC_LISTEN", "MCP_LOCKD_HTTP_LISTEN"]) {
      assert.ok(stdout.includes(name), `help mentions ${name}`);
    }
    assert.match(stdout, /127\.0\.0\.1/, "help names the loopback default");
    const addresses = stdout.match(/\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}:\d+/g) ?? [];
    assert.ok(addresses.length >= 2, "help shows both default listen addresses");
    for (const address of addresses) assert.match(address, /^127\./, `default ${address} is loopback`);
    assert.ok(!stdout.includes("0.0.0.0") && !stdout.includes("[::]"), "no wildcard default");
  }
});

test("--version prints package.json's version and exits 0", async () => {
  const { version } = JSON.parse(await readFile(PACKAGE_JSON, "utf8")) as { version: string };
  for (const flag of ["--version", "-v"]) {
    const { code, stdout } = await runCli([flag]);
    assert.equal(code, 0);
    assert.equal(stdout.trim(), version);
  }
});

test("usage errors exit 64 with a message", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["frobnicate"], /unknown command "frobnicate"/],
    [["--bogus"], /unknown command "--bogus"/],
    [[], /command/],
    [["serve", "--bogus"], /bogus/],
    [["serve", "--lock-dir"], /lock-dir/],
    [["serve", "stray-positional"], /stray-positional/],
  ];
  for (const [args, message] of cases) {
    const { code, stderr, stdout } = await runCli(args);
    assert.equal(code, 64, `mcp-lockd ${args.join(" ")} exits 64 (stdout: ${stdout}, stderr: ${stderr})`);
    assert.match(stderr, message, `mcp-lockd ${args.join(" ")} says why`);
    assert.ok(!/mcp-lockd serving/.test(stdout), "nothing was served");
  }
});

test("MCP_LOCKD_DIR, MCP_LOCKD_GRPC_LISTEN and MCP_LOCKD_HTTP_LISTEN are honoured", async () => {
  const tmp = await makeTempDir();
  const lockDir = join(tmp.path, "env-locks");
  let service: Awaited<ReturnType<typeof serveWithEnv>> | undefined;
  let client: TestLockClient | undefined;
  try {
    service = await serveWithEnv(
      cleanEnv({ MCP_LOCKD_DIR: lockDir, MCP_LOCKD_GRPC_LISTEN: "127.0.0.2:0", MCP_LOCKD_HTTP_LISTEN: "127.0.0.2:0" }),
      tmp.path,
    );
    const match = /grpc=(127\.0\.0\.2:(\d+)) http=(127\.0\.0\.2:(\d+)) lock-dir=(.+)$/.exec(service.line);
    assert.ok(match, `the serving line uses the environment: ${service.line}`);
    assert.notEqual(Number(match[2]), 0, "a real gRPC port was picked");
    assert.notEqual(Number(match[4]), 0, "a real HTTP port was picked");
    assert.equal(match[5], lockDir);

    client = new TestLockClient(match[1]!);
    const { lease } = await client.acquire({ resource: "env-res", holder: "env", ttl: { seconds: 10, nanos: 0 } });
    assert.ok(lease);
    await assertValidLeaseFile(join(lockDir, "env-res.lock"));
    assert.equal(await exists(join(tmp.path, ".mcp-gateway")), false, "the default lock dir was not used");
    const health = await fetch(`http://${match[3]}/healthz`);
    assert.equal(health.status, 200);
    await client.release(lease.leaseId);
  } finally {
    client?.close();
    await service?.stop();
    await tmp.remove();
  }
});

test("flags win over the environment", async () => {
  const tmp = await makeTempDir();
  const envDir = join(tmp.path, "env-dir");
  const flagDir = join(tmp.path, "flag-dir");
  // startServiceProcess passes --lock-dir, --grpc-listen 127.0.0.1:0 and --http-listen 127.0.0.1:0.
  const service = await startServiceProcess({
    lockDir: flagDir,
    env: { MCP_LOCKD_DIR: envDir, MCP_LOCKD_GRPC_LISTEN: "127.0.0.2:0", MCP_LOCKD_HTTP_LISTEN: "127.0.0.2:0" },
  });
  const client = new TestLockClient(service.grpcAddress);
  try {
    assert.match(service.grpcAddress, /^127\.0\.0\.1:\d+$/, "the --grpc-listen flag wins");
    assert.match(service.httpAddress, /^127\.0\.0\.1:\d+$/, "the --http-listen flag wins");
    const { lease } = await client.acquire({ resource: "flag-res", holder: "flag", ttl: { seconds: 10, nanos: 0 } });
    assert.ok(lease);
    assert.equal(await exists(join(flagDir, "flag-res.lock")), true, "the --lock-dir flag wins");
    assert.equal(await exists(envDir), false, "MCP_LOCKD_DIR was not used");
    assert.equal((await fetch(`http://${service.httpAddress}/healthz`)).status, 200);
    await client.release(lease.leaseId);
  } finally {
    client.close();
    await service.stop();
    await tmp.remove();
  }
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`${signal} with a lease held and a caller waiting: exit 0 promptly, the waiter gets UNAVAILABLE, the lease file stays`, async () => {
    const tmp = await makeTempDir();
    const service = await startServiceProcess({ lockDir: tmp.path });
    const client = new TestLockClient(service.grpcAddress);
    let waiterOutcome: Promise<unknown> | undefined;
    try {
      const resource = `shutdown-${signal.toLowerCase()}`;
      const { lease } = await client.acquire({ resource, holder: "long-holder", ttl: { seconds: 120, nanos: 0 } });
      assert.ok(lease);
      const stream = client.keepAlive();
      assert.equal((await stream.renew(lease.leaseId)).expired, false);
      const waiting: Promise<AcquireResponse> = client.acquire({
        resource,
        holder: "patient",
        ttl: { seconds: 10, nanos: 0 },
        waitTimeout: { seconds: 60, nanos: 0 },
      });
      waiterOutcome = waiting.catch((err: unknown) => err);
      await waitFor(
        async () => (await client.listLocks(resource)).locks.find((l) => l.resource === resource)?.waiters === 1,
        "the waiter to be queued",
      );

      const started = Date.now();
      const code = await service.stop(signal);
      const elapsed = Date.now() - started;
      assert.equal(code, 0, `exit code after ${signal} (stderr:\n${service.stderr()})`);
      // The service's own grace period is 5 s; nothing should need it.
      assert.ok(elapsed < 4_000, `took ${elapsed} ms to exit after ${signal}`);

      const outcome = await waiterOutcome;
      assert.ok(isServiceError(outcome), `the waiter failed with a gRPC error, got ${JSON.stringify(outcome)}`);
      assert.equal(outcome.code, status.UNAVAILABLE, `waiter status: ${status[outcome.code]} ${outcome.details}`);
      const streamEnd = await stream.ended; // must settle, not hang
      assert.notEqual(streamEnd?.code, status.INTERNAL, `the KeepAlive stream ended with ${streamEnd?.details}`);

      const file = await assertValidLeaseFile(join(tmp.path, `${resource}.lock`));
      assert.equal(file.holder, "long-holder", "the held lease survives the shutdown");
      assert.ok(Date.parse(file.expires_at as string) > Date.now(), "and is still live");
      assert.match(service.stderr(), new RegExp(signal));
    } finally {
      client.close();
      await service.stop("SIGKILL");
      await waiterOutcome;
      await tmp.remove();
    }
  });
}
