// The service's log (a real `mcp-lockd serve`, under the runtime
// MCP_LOCKD_TEST_RUNTIME names): JSON lines with levels and fields, every
// grant, release and hand-over at debug, refused calls at info, nothing below
// the chosen level, the text format, and never a lease id.
import { test } from "node:test";
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { startServiceProcess } from "../helpers/service-process.ts";
import { expectGrpcError, TestLockClient } from "../helpers/lock-client.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { runProcess } from "../helpers/run-process.ts";
import { cliCommand } from "../helpers/service-process.ts";
import { EventReader } from "../helpers/event-reader.ts";
import { LockClient } from "../../src/client/index.ts";

const seconds = (s: number) => ({ seconds: s, nanos: 0 });

async function withLoggingService(env: Record<string, string>, fn: (client: TestLockClient, address: string) => Promise<void>): Promise<string> {
  const temp = await makeTempDir();
  const service = await startServiceProcess({ lockDir: temp.path, env });
  const client = new TestLockClient(service.grpcAddress);
  try {
    await fn(client, service.grpcAddress);
  } finally {
    client.close();
    assert.equal(await service.stop(), 0);
    await temp.remove();
  }
  return service.stderr();
}

test("--log-format json --log-level debug: lock events with fields, refused calls, no lease id", async () => {
  const ids: string[] = [];
  const stderr = await withLoggingService({ MCP_LOCKD_LOG_FORMAT: "json", MCP_LOCKD_LOG_LEVEL: "debug" }, async (client, address) => {
    await using watcher = new LockClient({ address });
    const events = new EventReader(watcher.watch("logged"));
    await events.until((event) => event.type === "SNAPSHOT_COMPLETE", "the watch to open");
    const first = (await client.acquire({ resource: "logged", holder: "log-holder-1", ttl: seconds(30) })).lease!;
    const waiting = client.acquire({ resource: "logged", holder: "log-holder-2", waitTimeout: seconds(30) });
    await events.until((event) => event.type === "WAITERS_CHANGED" && event.waiters === 1, "the waiter to queue");
    await events.close();
    await client.release(first.leaseId);
    const second = (await waiting).lease!;
    await client.release(second.leaseId);
    ids.push(first.leaseId, second.leaseId);
    await expectGrpcError(client.acquire({ resource: "bad/name" }), status.INVALID_ARGUMENT);
  });
  const lines = stderr.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
  for (const line of lines) {
    assert.equal(typeof line.time, "string");
    assert.ok(["error", "warn", "info", "debug"].includes(line.level as string), JSON.stringify(line));
  }
  const serving = lines.find((line) => line.msg === "serving");
  assert.equal(serving?.level, "info");
  assert.match(String(serving?.grpc), /^127\.0\.0\.1:\d+$/);
  const acquired = lines.find((line) => line.msg === "lock acquired");
  assert.deepEqual(
    { level: acquired?.level, resource: acquired?.resource, holder: acquired?.holder, token: typeof acquired?.fencing_token, ttl: acquired?.ttl_ms },
    { level: "debug", resource: "logged", holder: "log-holder-1", token: "number", ttl: 30_000 },
  );
  const handedOver = lines.find((line) => line.msg === "lock handed_over");
  assert.equal(handedOver?.holder, "log-holder-2");
  assert.equal(handedOver?.previous_holder, "log-holder-1");
  assert.equal(typeof handedOver?.held_ms, "number");
  const released = lines.find((line) => line.msg === "lock released");
  assert.equal(released?.holder, "log-holder-2");
  const rejected = lines.find((line) => line.msg === "call rejected");
  assert.deepEqual(
    { level: rejected?.level, method: rejected?.method, code: rejected?.code },
    { level: "info", method: "mcplockd.v1.LockService/Acquire", code: "InvalidArgument" },
  );
  for (const id of ids) assert.ok(!stderr.includes(id), "a lease id reached the log");
});

test("the text format, and nothing below --log-level (info by default)", async () => {
  const stderr = await withLoggingService({ MCP_LOCKD_LOG_FORMAT: "text" }, async (client) => {
    const lease = (await client.acquire({ resource: "quiet", holder: "quiet-holder" })).lease!;
    await client.release(lease.leaseId);
  });
  assert.ok(!stderr.includes("lock acquired") && !stderr.includes("quiet-holder"), `nothing at debug:\n${stderr}`);
  assert.match(stderr, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z mcp-lockd: serving grpc=127\.0\.0\.1:\d+ http=\S+ lock_dir=\S+ version=0\.1\.0$/m);
});

test("a bad --log-level or --log-format is a usage error naming the flag", async () => {
  const { command, args } = cliCommand(["serve", "--log-level", "loud"]);
  const result = await runProcess(command, args, { timeoutMs: 20_000 });
  assert.equal(result.code, 64);
  assert.match(result.stderr, /--log-level "loud": expected one of error, warn, info, debug/);
  const format = cliCommand(["serve", "--log-format", "xml"]);
  const bad = await runProcess(format.command, format.args, { timeoutMs: 20_000 });
  assert.equal(bad.code, 64);
  assert.match(bad.stderr, /--log-format "xml": expected one of text, json/);
});
