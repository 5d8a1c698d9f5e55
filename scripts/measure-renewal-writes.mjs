#!/usr/bin/env node
// node scripts/measure-renewal-writes.mjs [seconds]: renewals that must write
// (more than the second of headroom after the last write), by the lease-file
// store alone (no gRPC), 1 caller and 64 callers on their own leases, two ways:
//   in place: the store renews the file it wrote last (pwrite + fdatasync);
//   guarded:  two stores on one dir take turns, so each finds the file written
//             by the other and renews under the guard (temp file, fsync,
//             rename, lock-dir fsync), the path of a restarted service.
// The stores' clock runs 2 s ahead per renewal round, so every renewal is past
// the horizon; the disk calls are real. Prints renewals/s, latency p50/p99 and
// the process's CPU per renewal.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const seconds = Number(process.argv[2] ?? 3);
const { LeaseFileStore } = await import(new URL("../dist/src/store/lease-file-store.js", import.meta.url).href);
const { systemClock } = await import(new URL("../dist/src/core/clock.js", import.meta.url).href);

/** The system clock, moved on 2 s whenever told: every round is "2 s later". */
function steppedClock() {
  let offset = 0;
  return { ...systemClock, now: () => Date.now() + offset, step: () => (offset += 2_000) };
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

async function run(callers, way) {
  const dir = mkdtempSync(join(tmpdir(), "mcp-lockd-renewals-"));
  const clock = steppedClock();
  const stores = [new LeaseFileStore({ dir, clock }), new LeaseFileStore({ dir, clock })];
  await stores[0].open();
  const hashes = Array.from({ length: callers }, (_, i) => String(i).padStart(64, "0"));
  for (let i = 0; i < callers; i++) {
    const outcome = await stores[0].acquire(`r${i}`, { holder: `h${i}`, ttlMs: 30_000, metadata: {}, leaseIdHash: hashes[i] }, undefined);
    if (!("granted" in outcome)) throw new Error("not granted");
  }
  const latencies = [];
  let round = 0;
  const cpuBefore = process.cpuUsage();
  const started = Date.now();
  while (Date.now() - started < seconds * 1000) {
    clock.step();
    const store = way === "guarded" ? stores[++round % 2] : stores[0];
    await Promise.all(
      hashes.map(async (hash, i) => {
        const t0 = performance.now();
        if ((await store.renew(`r${i}`, hash)) === undefined) throw new Error(`r${i}: lost`);
        latencies.push(performance.now() - t0);
      }),
    );
  }
  const elapsed = (Date.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  for (const store of stores) await store.close();
  rmSync(dir, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  return {
    "renewals/s": Math.round(latencies.length / elapsed),
    "p50 ms": Number(percentile(latencies, 50).toFixed(3)),
    "p99 ms": Number(percentile(latencies, 99).toFixed(3)),
    "cpu ms/renewal": Number(((cpu.user + cpu.system) / 1000 / latencies.length).toFixed(3)),
  };
}

const results = {};
for (const callers of [1, 64]) {
  for (const way of ["in place", "guarded"]) results[`${way}, ${callers} caller${callers > 1 ? "s" : ""}`] = await run(callers, way);
}
console.log(JSON.stringify({ seconds, threadpool: process.env.UV_THREADPOOL_SIZE ?? "4 (default)", results }, null, 1));
