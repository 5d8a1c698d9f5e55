#!/usr/bin/env node
// node scripts/measure-memory.mjs [leases] [seconds]: where mcp-lockd's
// resident memory goes (issue 12). Prints VmRSS (/proc/PID/status) of
//   - an empty Node process, and Node after importing the service's
//     dependencies one after another (what each adds to the baseline);
//   - `mcp-lockd serve` idle (1 s after its serving line), with its
//     Prometheus metrics on (the default) and off;
//   - the same service holding `leases` leases (default 10,000, ttl 10 s)
//     renewed at ttl/3 on 100 KeepAlive streams for `seconds` (default 20),
//     with V8's heap figures from its own /metrics.
// MEASURE_LOCK_DIR_PARENT=/dev/shm puts the lock dir on tmpfs, where grants
// cost no disk wait (what is measured here reads no file). Needs `npm run build`. Each service gets a fresh lock dir and ports 0.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { LockServiceClient } = await import(join(root, "dist/src/gen/mcplockd/v1/lock.js"));
const leases = Number(process.argv[2] ?? 10_000);
const seconds = Number(process.argv[3] ?? 20);
const STREAMS = 100;
const TTL_SECONDS = 10;

const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) / 1024;
const fmt = (mib) => `${mib.toFixed(1)} MiB`;

/** VmRSS of `node -e` importing `modules` in order, once settled. */
async function nodeWith(modules) {
  const code = `for (const m of ${JSON.stringify(modules)}) await import(m); setTimeout(() => {}, 60000);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], { cwd: root, stdio: "ignore" });
  await sleep(1_500);
  const rss = rssMiB(child.pid);
  child.kill();
  await once(child, "exit");
  return rss;
}

async function startService(extraArgs = []) {
  const dir = mkdtempSync(join(process.env.MEASURE_LOCK_DIR_PARENT ?? tmpdir(), "measure-memory-"));
  const child = spawn(
    process.execPath,
    [join(root, "bin/mcp-lockd.js"), "serve", "--lock-dir", dir, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", ...extraArgs],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  let output = "";
  const match = await new Promise((resolve, reject) => {
    child.stdout.on("data", (chunk) => {
      output += chunk;
      const found = /mcp-lockd serving grpc=(\S+) http=(\S+)/.exec(output);
      if (found) resolve(found);
    });
    child.once("exit", (code) => reject(new Error(`serve exited with ${code}: ${output}`)));
  });
  child.stdout.resume();
  return {
    pid: child.pid,
    grpc: match[1],
    http: match[2],
    async stop() {
      child.kill("SIGTERM");
      await once(child, "exit");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** V8's heap figures from the service's own /metrics (prom-client's default metrics). */
async function heapFigures(http) {
  const text = await (await fetch(`http://${http}/metrics`)).text();
  const value = (name) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN) / 1024 / 1024;
  return `V8 heap used ${fmt(value("nodejs_heap_size_used_bytes"))} of ${fmt(value("nodejs_heap_size_total_bytes"))}, external ${fmt(value("nodejs_external_memory_bytes"))}`;
}

/** Grants `count` leases, then renews each every ttl/3 for `renewSeconds`; returns the grant time and a stop function. */
async function holdAndRenew(address, count, renewSeconds) {
  const started = Date.now();
  const clients = Array.from({ length: STREAMS }, (_, i) => new LockServiceClient(address, grpc.credentials.createInsecure(), { "grpc.channel_id": i }));
  const acquire = (client, resource) =>
    new Promise((resolve, reject) =>
      client.acquire({ resource, holder: "measure-memory", ttl: { seconds: TTL_SECONDS, nanos: 0 }, metadata: {} }, (err, response) =>
        err ? reject(err) : resolve(response.lease.leaseId),
      ),
    );
  const streams = clients.map((client) => {
    const call = client.keepAlive();
    call.on("data", () => {});
    call.on("error", () => {});
    return call;
  });
  const ids = [];
  const timers = [];
  for (let i = 0; i < count; i += 32) {
    const batch = await Promise.all(Array.from({ length: Math.min(32, count - i) }, (_, k) => acquire(clients[(i + k) % STREAMS], `mem-${i + k}`)));
    for (const id of batch) {
      const stream = streams[ids.length % STREAMS];
      ids.push(id);
      timers.push(setInterval(() => stream.write({ leaseId: id }), (TTL_SECONDS * 1000) / 3));
    }
  }
  const grantSeconds = (Date.now() - started) / 1000;
  await sleep(renewSeconds * 1000);
  return { grantSeconds, stop: () => {
    for (const timer of timers) clearInterval(timer);
    for (const stream of streams) stream.end();
    for (const client of clients) client.close();
  } };
}

console.log(`Node ${process.version}; VmRSS after 1.5 s (modules) or 1 s after serving (services)`);
const baseline = await nodeWith([]);
console.log(`empty node process: ${fmt(baseline)}`);
const loaded = [];
for (const module of ["@grpc/grpc-js", "@bufbuild/protobuf/wire", "pino", "prom-client"]) {
  loaded.push(module);
  const rss = await nodeWith(loaded);
  console.log(`  + ${module}: ${fmt(rss)} (${fmt(rss - baseline)} over the empty process)`);
}
for (const module of ["@modelcontextprotocol/sdk/server/mcp.js", "zod"]) {
  console.log(`  (not loaded by serve) ${module} alone: ${fmt(await nodeWith([module]))}`);
}

for (const args of [["--metrics", "off"], []]) {
  const service = await startService(args);
  await sleep(1_000);
  console.log(`mcp-lockd serve ${args.join(" ") || "(metrics on, the default)"} idle: ${fmt(rssMiB(service.pid))}`);
  if (args.length === 0) {
    console.log(`  ${await heapFigures(service.http)}`);
    const { grantSeconds, stop } = await holdAndRenew(service.grpc, leases, seconds);
    console.log(`holding ${leases} leases (granted in ${grantSeconds.toFixed(1)} s, then renewed at ttl/3 for ${seconds} s): ${fmt(rssMiB(service.pid))}`);
    console.log(`  ${await heapFigures(service.http)}`);
    stop();
  }
  await service.stop();
}
process.exit(0);
