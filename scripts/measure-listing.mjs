#!/usr/bin/env node
// node scripts/measure-listing.mjs [ROOT] [leases] [requests]: how long a
// listing of many held locks takes (issue 12), to the last byte, on
// `mcp-lockd serve` started from ROOT (default: this checkout; give another
// checkout's root, built, to compare versions). It grants `leases` leases
// (default 10,000; ttl 30 s, 64 grants in flight), keeps renewing every one
// at ttl/3 on 100 KeepAlive streams (so the entries keep changing, as in
// use), then a separate process makes `requests` (default 50) sequential
// GET /health/locks and then as many ListLocks calls, after one warm-up each,
// and prints p50/p99 (HTTP to the last byte; ListLocks including grpc-js's
// decoding in the client, which comes before its callback).
// MEASURE_LOCK_DIR_PARENT=/dev/shm puts the lock dir on tmpfs, where grants
// cost no disk wait (a listing reads no file). Needs `npm run build` in ROOT
// and in this checkout.
import { fork, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";

const here = join(dirname(fileURLToPath(import.meta.url)), "..");
const { LockServiceClient } = await import(join(here, "dist/src/gen/mcplockd/v1/lock.js"));

if (process.argv[2] === "--lister") {
  // The lister: its own process, so the renewals' client work does not delay its reads.
  const [, , , grpcAddress, httpAddress, requests] = process.argv;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = () =>
    new Promise((done, fail) =>
      http
        .get(`http://${httpAddress}/health/locks`, { agent }, (response) => {
          const chunks = [];
          response.on("data", (chunk) => chunks.push(chunk));
          response.on("end", () => done(Buffer.concat(chunks)));
        })
        .on("error", fail),
    );
  const client = new LockServiceClient(grpcAddress, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": -1 });
  // grpc-js decodes before the callback, so a ListLocks time includes the client's decoding.
  const list = () => new Promise((done, fail) => client.listLocks({ resourcePrefix: "" }, (err, response) => (err ? fail(err) : done(response.locks))));
  const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  const results = {};
  for (const [name, call] of [["GET /health/locks", get], ["ListLocks", list]]) {
    await call();
    const times = [];
    let answer;
    for (let i = 0; i < Number(requests); i++) {
      const started = performance.now();
      answer = await call();
      times.push(performance.now() - started);
    }
    // Decoded after the timing: the time is to the last byte.
    const entries = Buffer.isBuffer(answer) ? JSON.parse(answer.toString()).locks.length : answer.length;
    times.sort((a, b) => a - b);
    results[name] = { entries, p50: quantile(times, 0.5), p99: quantile(times, 0.99) };
  }
  process.send(results);
  process.exit(0);
}

const root = resolve(process.argv[2] ?? here);
const leases = Number(process.argv[3] ?? 10_000);
const requests = Number(process.argv[4] ?? 50);
const TTL_SECONDS = 30;
const STREAMS = 100;

const dir = mkdtempSync(join(process.env.MEASURE_LOCK_DIR_PARENT ?? tmpdir(), "measure-listing-"));
const server = spawn(process.execPath, [join(root, "bin/mcp-lockd.js"), "serve", "--lock-dir", dir, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"], {
  stdio: ["ignore", "pipe", "ignore"],
});
let output = "";
const [, grpcAddress, httpAddress] = await new Promise((done, fail) => {
  server.stdout.on("data", (chunk) => {
    output += chunk;
    const found = /mcp-lockd serving grpc=(\S+) http=(\S+)/.exec(output);
    if (found) done(found);
  });
  server.once("exit", (code) => fail(new Error(`serve exited with ${code}`)));
});
server.stdout.resume();

const clients = Array.from({ length: STREAMS }, (_, i) => new LockServiceClient(grpcAddress, grpc.credentials.createInsecure(), { "grpc.channel_id": i }));
const streams = clients.map((client) => {
  const call = client.keepAlive();
  call.on("data", () => {});
  call.on("error", () => {});
  return call;
});
const acquire = (client, resource) =>
  new Promise((done, fail) =>
    client.acquire({ resource, holder: "measure-listing", ttl: { seconds: TTL_SECONDS, nanos: 0 }, metadata: { job: resource } }, (err, response) =>
      err ? fail(err) : done(response.lease.leaseId),
    ),
  );
const began = Date.now();
const timers = [];
let granted = 0;
for (let i = 0; i < leases; i += 64) {
  const ids = await Promise.all(Array.from({ length: Math.min(64, leases - i) }, (_, k) => acquire(clients[(i + k) % STREAMS], `held-${i + k}`)));
  for (const id of ids) {
    const stream = streams[granted++ % STREAMS];
    timers.push(setInterval(() => stream.write({ leaseId: id }), (TTL_SECONDS * 1000) / 3));
  }
}
const grantSeconds = (Date.now() - began) / 1000;
const lister = fork(fileURLToPath(import.meta.url), ["--lister", grpcAddress, httpAddress, String(requests)], { stdio: "inherit" });
const [results] = await once(lister, "message");
const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, "utf8"))[1]) / 1024;
const [cpuUser, cpuSystem] = readFileSync(`/proc/${server.pid}/stat`, "utf8").split(") ")[1].split(" ").slice(11, 13).map(Number);
console.log(`${root}: ${leases} leases granted in ${grantSeconds.toFixed(1)} s, renewed at ttl/3 (${Math.round((leases * 3) / TTL_SECONDS)}/s) while listed; server RSS ${rss.toFixed(1)} MiB, CPU ${((cpuUser + cpuSystem) / 100).toFixed(1)} s in all`);
for (const [name, { entries, p50, p99 }] of Object.entries(results)) {
  console.log(`  ${name}: ${entries} entries, p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms (${requests} requests)`);
}
for (const timer of timers) clearInterval(timer);
for (const stream of streams) stream.end();
server.kill("SIGTERM");
await once(server, "exit");
rmSync(dir, { recursive: true, force: true });
process.exit(0);
