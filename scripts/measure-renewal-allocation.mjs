#!/usr/bin/env node
// node scripts/measure-renewal-allocation.mjs [LEASES] [RATE] [SECONDS]: what
// one renewal allocates in mcp-lockd's server, and what that costs in GC
// (issue 12: the renewal and listing p99 are the event loop's pauses). Starts
// `mcp-lockd serve` on a fresh lock dir with this file preloaded, grants
// LEASES leases (default 3,000; ttl 60 s), renews them round-robin at RATE
// renewals/s (default 900) over 30 KeepAlive streams, and after 5 s of
// warm-up samples the server's allocations (V8's sampling heap profiler,
// every 4 KiB) for SECONDS (default 8). With LEASES / RATE over a second,
// every renewal is past the horizon of the last write (docs/protocol.md §5),
// so each is a rewrite in place. Prints KiB allocated per renewal, the
// allocation sites that allocate most, scavenges per 1,000 renewals and their
// mean pause, renewal p50/p99 and the server's CPU. The profiler tracks
// every sampled object through the collections, which makes scavenges
// longer than without it (about 4-5 ms each unprofiled, 6.5-7.5 ms here):
// compare runs of this script with each other. Needs `npm run build`.
//
// Preloaded into the server (MEASURE_ALLOCATION_OUT set), the same file
// starts sampling on the first SIGUSR2 and writes the profile and GC pauses
// to that file on the second.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

if (process.env.MEASURE_ALLOCATION_OUT !== undefined) await preload(process.env.MEASURE_ALLOCATION_OUT);
else await measure(...process.argv.slice(2).map(Number));

async function preload(out) {
  const { Session } = await import("node:inspector");
  const { PerformanceObserver } = await import("node:perf_hooks");
  const session = new Session();
  session.connect();
  const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))));
  let sampling = false;
  const pauses = [];
  new PerformanceObserver((list) => {
    if (sampling) for (const entry of list.getEntries()) pauses.push({ minor: entry.detail?.kind === 1, ms: entry.duration });
  }).observe({ entryTypes: ["gc"] });
  process.on("SIGUSR2", async () => {
    if (!sampling) {
      await post("HeapProfiler.enable");
      await post("HeapProfiler.startSampling", { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
      sampling = true;
      return;
    }
    sampling = false;
    const { profile } = await post("HeapProfiler.stopSampling");
    writeFileSync(out, JSON.stringify({ profile, pauses }));
  });
}

async function measure(leases = 3_000, rate = 900, seconds = 8) {
  const { credentials } = await import("@grpc/grpc-js");
  const { LockServiceClient } = await import(new URL("../dist/src/gen/mcplockd/v1/lock.js", import.meta.url).href);
  const root = mkdtempSync(join(tmpdir(), "mcp-lockd-allocation-"));
  const out = join(root, "allocation.json");
  const server = spawn(
    process.execPath,
    ["--import", fileURLToPath(import.meta.url), fileURLToPath(new URL("../bin/mcp-lockd.js", import.meta.url)), "serve", "--lock-dir", join(root, "locks"), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--log-level", "warn"],
    { env: { ...process.env, MEASURE_ALLOCATION_OUT: out, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? "16" }, stdio: ["ignore", "pipe", "inherit"] },
  );
  try {
    const address = await new Promise((resolve, reject) => {
      let text = "";
      server.stdout.on("data", (chunk) => {
        text += chunk;
        const match = /serving grpc=(\S+)/.exec(text);
        if (match) resolve(match[1]);
      });
      server.once("exit", () => reject(new Error("the service exited before serving")));
    });
    const cpuMs = () => {
      const fields = readFileSync(`/proc/${server.pid}/stat`, "utf8").split(") ")[1].split(" ");
      return (Number(fields[11]) + Number(fields[12])) * 10;
    };
    const clients = Array.from({ length: 30 }, () => new LockServiceClient(address, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }));
    const ids = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async (_, worker) => {
        while (next < leases) {
          const i = next++;
          const response = await new Promise((resolve, reject) =>
            clients[worker % clients.length].acquire({ resource: `alloc-${i}`, holder: "measure", ttl: { seconds: 60, nanos: 0 }, metadata: {} }, (err, res) => (err ? reject(err) : resolve(res))),
          );
          ids[i] = response.lease.leaseId;
        }
      }),
    );
    const sentAt = new Map();
    const latencies = [];
    let measuring = false;
    let answered = 0;
    let expired = 0;
    const streams = clients.map((client) => {
      const stream = client.keepAlive();
      stream.on("data", (response) => {
        if (response.expired) expired++;
        const sent = sentAt.get(response.leaseId);
        if (sent === undefined || !measuring) return;
        answered++;
        latencies.push(performance.now() - sent);
      });
      stream.on("error", () => {});
      return stream;
    });
    const start = performance.now();
    let sent = 0;
    const tick = setInterval(() => {
      const due = Math.floor(((performance.now() - start) / 1000) * rate);
      for (; sent < due; sent++) {
        const i = sent % leases;
        sentAt.set(ids[i], performance.now());
        streams[i % streams.length].write({ leaseId: ids[i] });
      }
    }, 2);
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    server.kill("SIGUSR2");
    await new Promise((resolve) => setTimeout(resolve, 200));
    measuring = true;
    const cpuBefore = cpuMs();
    const from = performance.now();
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    measuring = false;
    const elapsed = (performance.now() - from) / 1000;
    const cpu = (cpuMs() - cpuBefore) / elapsed / 10;
    server.kill("SIGUSR2");
    clearInterval(tick);
    for (const stream of streams) stream.end();
    const { profile, pauses } = await waitForJson(out);
    for (const client of clients) client.close();
    report({ profile, pauses, answered, latencies, cpu, expired, leases, rate, seconds: elapsed });
  } finally {
    server.kill("SIGTERM");
    await once(server, "exit").catch(() => {});
    rmSync(root, { recursive: true, force: true });
  }
}

async function waitForJson(path) {
  for (let i = 0; i < 100; i++) {
    try {
      return JSON.parse(readFileSync(path, "utf8"));
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`no allocation profile in ${path}`);
}

function report({ profile, pauses, answered, latencies, cpu, expired, leases, rate, seconds }) {
  const bySite = new Map();
  let total = 0;
  const walk = (node) => {
    const frame = node.callFrame;
    const site = `${frame.functionName || "(anonymous)"} ${frame.url.replace(/.*\/node_modules\//, "").replace(/.*\/dist\//, "")}:${frame.lineNumber + 1}`;
    total += node.selfSize;
    bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
    for (const child of node.children) walk(child);
  };
  walk(profile.head);
  latencies.sort((a, b) => a - b);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))]?.toFixed(2);
  const minor = pauses.filter((p) => p.minor);
  const kib = (bytes) => (bytes / 1024 / Math.max(1, answered)).toFixed(2);
  console.log(`${leases} leases, ${rate} renewals/s asked, ${seconds.toFixed(1)} s sampled: ${answered} renewals answered (${expired} expired)`);
  console.log(`allocated per renewal: ${kib(total)} KiB; server CPU ${cpu.toFixed(0)} % of a core; renewal p50 ${at(0.5)} ms, p99 ${at(0.99)} ms`);
  console.log(
    `scavenges: ${((1000 * minor.length) / Math.max(1, answered)).toFixed(2)} per 1,000 renewals, mean ${(minor.reduce((s, p) => s + p.ms, 0) / Math.max(1, minor.length)).toFixed(2)} ms; ` +
      `other GC pauses: ${pauses.length - minor.length}, max ${Math.max(0, ...pauses.filter((p) => !p.minor).map((p) => p.ms)).toFixed(1)} ms`,
  );
  console.log("KiB per renewal by allocation site (self):");
  for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`${kib(bytes).padStart(8)}  ${site}`);
}
