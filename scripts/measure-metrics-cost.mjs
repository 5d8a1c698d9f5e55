#!/usr/bin/env node
// node scripts/measure-metrics-cost.mjs [ROUNDS] [SECONDS] [keepalive|cycles]:
// KeepAlive at the maximum rate (100 leases, 10 streams, each stream renewing
// its 10 leases together, round after round), or uncontended acquire+release
// cycles from one client (`cycles`), against `mcp-lockd serve` in its own process,
// with --metrics on and off in alternating rounds (default 6 rounds of 2.5 s
// each), and prints operations/s and the service's CPU time per operation (from
// /proc, so Linux only) per round, and their medians. An A/B on one machine,
// so both settings see the same background load; the CPU per renewal is the
// steadier figure (the client may be what limits the rate).
// Needs `npm run build`.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { credentials } from "@grpc/grpc-js";
import { LockServiceClient } from "../dist/src/gen/mcplockd/v1/lock.js";

const rounds = Number(process.argv[2] ?? 6);
const seconds = Number(process.argv[3] ?? 2.5);
const workload = process.argv[4] ?? "keepalive";
if (!["keepalive", "cycles"].includes(workload)) {
  process.stderr.write("usage: node scripts/measure-metrics-cost.mjs [ROUNDS] [SECONDS] [keepalive|cycles]\n");
  process.exit(64);
}
const CLI = fileURLToPath(new URL("../bin/mcp-lockd.js", import.meta.url));
/** utime + stime of a process, in clock ticks (1/100 s on Linux). */
const cpuTicks = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return Number(fields[11]) + Number(fields[12]);
};

async function measure(metrics) {
  const dir = mkdtempSync(join(tmpdir(), "metrics-cost-"));
  const child = spawn(process.execPath, [CLI, "serve", "--lock-dir", dir, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--metrics", metrics], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  const address = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const match = /grpc=(\S+)/.exec(out);
      if (match) resolve(match[1]);
    });
    child.on("exit", (code) => reject(new Error(`mcp-lockd exited with ${code}`)));
  });
  const client = new LockServiceClient(address, credentials.createInsecure());
  const acquire = (resource) =>
    new Promise((resolve, reject) =>
      client.acquire({ resource, holder: "bench", ttl: { seconds: 60, nanos: 0 }, metadata: {} }, (err, res) => (err ? reject(err) : resolve(res.lease.leaseId))),
    );
  if (workload === "cycles") return measureCycles(child, client, acquire, dir);
  const ids = [];
  for (let i = 0; i < 100; i++) ids.push(await acquire(`cost-${i}`));
  const streams = Array.from({ length: 10 }, () => {
    const call = client.keepAlive();
    const pending = [];
    call.on("data", () => pending.shift()());
    call.on("error", () => {});
    return { call, renew: (leaseId) => new Promise((resolve) => (pending.push(resolve), call.write({ leaseId }))) };
  });
  const run = async (stream, mine, until) => {
    let renewed = 0;
    while (Date.now() < until) {
      await Promise.all(mine.map((id) => stream.renew(id)));
      renewed += mine.length;
    }
    return renewed;
  };
  const share = (i) => ids.slice(i * 10, i * 10 + 10);
  await Promise.all(streams.map((stream, i) => run(stream, share(i), Date.now() + 500))); // warm-up
  const until = Date.now() + seconds * 1000;
  const ticksBefore = cpuTicks(child.pid);
  const counts = await Promise.all(streams.map((stream, i) => run(stream, share(i), until)));
  const serverCpuMs = (cpuTicks(child.pid) - ticksBefore) * 10;
  for (const { call } of streams) call.end();
  await stop(child, client, dir);
  const renewals = counts.reduce((a, b) => a + b, 0);
  return { rate: renewals / seconds, cpuUs: (serverCpuMs * 1000) / renewals };
}

async function measureCycles(child, client, acquire, dir) {
  const release = (leaseId) => new Promise((resolve, reject) => client.release({ leaseId }, (err) => (err ? reject(err) : resolve())));
  const cycle = async () => release(await acquire("cost-cycle"));
  for (const end = Date.now() + 500; Date.now() < end; ) await cycle(); // warm-up
  const ticksBefore = cpuTicks(child.pid);
  let cycles = 0;
  for (const end = Date.now() + seconds * 1000; Date.now() < end; cycles++) await cycle();
  const serverCpuMs = (cpuTicks(child.pid) - ticksBefore) * 10;
  await stop(child, client, dir);
  return { rate: cycles / seconds, cpuUs: (serverCpuMs * 1000) / cycles };
}

async function stop(child, client, dir) {
  client.close();
  child.kill("SIGTERM");
  await new Promise((resolve) => child.on("exit", resolve));
  rmSync(dir, { recursive: true, force: true });
}

const results = { on: [], off: [] };
for (let round = 0; round < rounds; round++) {
  for (const metrics of round % 2 ? ["off", "on"] : ["on", "off"]) results[metrics].push(await measure(metrics));
}
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return sorted.length % 2 ? sorted[Math.floor(mid)] : (sorted[mid - 1] + sorted[mid]) / 2;
};
for (const [metrics, values] of Object.entries(results)) {
  const rates = values.map((v) => v.rate);
  const cpu = values.map((v) => v.cpuUs);
  const what = workload === "cycles" ? "cycle" : "renewal";
  console.log(`metrics ${metrics}: ${what}s/s ${rates.map((v) => v.toFixed(0)).join(", ")}; median ${median(rates).toFixed(0)}`);
  console.log(`metrics ${metrics}: service CPU µs per ${what} ${cpu.map((v) => v.toFixed(1)).join(", ")}; median ${median(cpu).toFixed(1)}`);
}
