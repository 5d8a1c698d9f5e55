#!/usr/bin/env node
// node scripts/measure-mcp.mjs [runs]: `mcp-lockd mcp` as an MCP client sees
// it, for each way of running it (the single executable, node
// bin/mcp-lockd.js, Deno): spawn to `initialize` answered (median of `runs`,
// default 5, after one unmeasured warm-up), then, on one session, the tool
// round trip lock_acquire + lock_release (50 cycles), the hand-over from one
// session's lock_release to the next waiting session's lock_acquire result
// (10 hand-overs), and closing a session that holds a lock until the lock is
// gone from ListLocks. The service is `node bin/mcp-lockd.js serve` on port 0
// with a fresh lock dir. Needs `npm run build` and `npm run build:binary`.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { LockClient } from "../dist/src/index.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const runs = Number(process.argv[2] ?? 5);
const ways = [
  { name: "single executable", command: join(root, "dist/mcp-lockd"), args: [] },
  { name: "node bin/mcp-lockd.js", command: process.execPath, args: [join(root, "bin/mcp-lockd.js")] },
  { name: "Deno (scripts/deno-run.sh)", command: join(root, "scripts/deno-run.sh"), args: [] },
];

const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};
const ms = (value) => `${value.toFixed(1)} ms`;
const now = () => performance.now();

const dir = mkdtempSync(join(tmpdir(), "mcp-lockd-measure-mcp-"));
const service = spawn(process.execPath, [join(root, "bin/mcp-lockd.js"), "serve", "--lock-dir", dir, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"], {
  stdio: ["ignore", "pipe", "ignore"],
});
const address = await new Promise((resolve) => {
  let stdout = "";
  service.stdout.setEncoding("utf8").on("data", (chunk) => {
    stdout += chunk;
    const match = /grpc=(\S+)/.exec(stdout);
    if (match) resolve(match[1]);
  });
});
const grpc = new LockClient({ address });

async function open(way, name) {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const transport = new StdioClientTransport({ command: way.command, args: [...way.args, "mcp", "--address", address], env, stderr: "ignore" });
  const client = new Client({ name, version: "1" });
  await client.connect(transport);
  return client;
}
const call = async (client, name, args) => {
  const result = await client.callTool({ name, arguments: args });
  if (result.isError) throw new Error(`${name}: ${result.content[0].text}`);
  return result.structuredContent;
};

const rows = [];
for (const way of ways) {
  const starts = [];
  for (let i = 0; i <= runs; i++) {
    const started = now();
    const client = await open(way, "measure");
    if (i > 0) starts.push(now() - started);
    await client.close();
  }
  const a = await open(way, "measure-a");
  const b = await open(way, "measure-b");
  const cycles = [];
  for (let i = 0; i < 50; i++) {
    const started = now();
    await call(a, "lock_acquire", { resource: "measure" });
    await call(a, "lock_release", { resource: "measure" });
    cycles.push(now() - started);
  }
  const handovers = [];
  await call(a, "lock_acquire", { resource: "handover" });
  let holder = a;
  let waiter = b;
  for (let i = 0; i < 10; i++) {
    const waiting = call(waiter, "lock_acquire", { resource: "handover", wait_seconds: 30 });
    while (((await grpc.list("handover"))[0]?.waiters ?? 0) < 1) await new Promise((resolve) => setTimeout(resolve, 5));
    const started = now();
    const released = call(holder, "lock_release", { resource: "handover" });
    await waiting;
    handovers.push(now() - started);
    await released;
    [holder, waiter] = [waiter, holder];
  }
  await call(holder, "lock_release", { resource: "handover" });
  const closes = [];
  for (let i = 0; i < runs; i++) {
    const client = await open(way, "measure-close");
    await call(client, "lock_acquire", { resource: "closing", ttl_seconds: 600 });
    const started = now();
    await client.close();
    while ((await grpc.list("closing")).length > 0) await new Promise((resolve) => setTimeout(resolve, 1));
    closes.push(now() - started);
  }
  await a.close();
  await b.close();
  rows.push([way.name, ms(percentile(starts, 50)), `${ms(percentile(cycles, 50))} / ${ms(percentile(cycles, 95))}`, ms(percentile(handovers, 50)), ms(percentile(closes, 50))]);
}

process.stdout.write(
  "| how | spawn to initialized (p50) | lock_acquire + lock_release (p50 / p95) | hand-over between sessions (p50) | close to released (p50) |\n" +
    "| --- | --- | --- | --- | --- |\n" +
    rows.map((row) => `| ${row.join(" | ")} |\n`).join(""),
);
grpc.close();
service.kill("SIGTERM");
await once(service, "exit");
rmSync(dir, { recursive: true, force: true });
