#!/usr/bin/env node
// node scripts/measure-fsync-placement.mjs [seconds] [modes]: the lease-file
// store alone (no gRPC) with its fsyncs on the event loop, on the thread pool,
// or placed by `auto` (serve --fsync; src/store/fsync-placement.ts), modes
// interleaved, in a fresh temp dir each. Per mode: acquire+release cycles per
// second with 1 caller and with 64 callers on 64 resources, the process's CPU
// per cycle (all threads), and what another resource's requests go through
// meanwhile: a held lease renewed every 5 ms while the 64 callers run (how
// many renewals got through, their p50/p99 in ms) and the event loop's delay
// (its sample count, p99, max). Also where the fsyncs ran and their moving
// average. On a slow disk, run it in a blkio cgroup
// (docs/performance.md, "fsyncs off the event loop"). Default: 3 s, loop,pool,auto.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { pathToFileURL } from "node:url";

const root = resolve(new URL("..", import.meta.url).pathname);
const seconds = Number(process.argv[2] ?? 3);
const modes = (process.argv[3] ?? "loop,pool,auto").split(",");
const { LeaseFileStore } = await import(pathToFileURL(join(root, "dist/src/store/lease-file-store.js")).href);

const grantOf = (i) => ({ holder: `h${i}`, ttlMs: 30_000, metadata: {}, leaseIdHash: String(i).padStart(64, "0") });
const percentile = (sorted, p) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]);
const round = (n, digits = 2) => Number(n.toFixed(digits));

async function cycles(store, callers, until) {
  let count = 0;
  await Promise.all(
    Array.from({ length: callers }, async (_, i) => {
      const grant = grantOf(i);
      while (performance.now() < until) {
        const outcome = await store.acquire(`r${i}`, grant);
        if (!("granted" in outcome)) throw new Error(`r${i} not granted`);
        await store.release(`r${i}`, grant.leaseIdHash);
        count++;
        // Requests arrive as I/O, not as one chain of promises: without this the
        // loop's synchronous calls would starve every timer (and the renewer).
        await new Promise((resolve) => setImmediate(resolve));
      }
    }),
  );
  return count;
}

async function measure(mode) {
  const dir = mkdtempSync(join(tmpdir(), "mcp-lockd-fsync-placement-"));
  const store = new LeaseFileStore({ dir, fsync: mode });
  await store.open();
  try {
    let cpu = process.cpuUsage();
    const one = await cycles(store, 1, performance.now() + seconds * 1000);
    const oneCpu = process.cpuUsage(cpu);

    const held = grantOf(999);
    if (!("granted" in (await store.acquire("held", held)))) throw new Error("held not granted");
    const renewals = [];
    const lag = monitorEventLoopDelay({ resolution: 1 });
    const until = performance.now() + seconds * 1000;
    const renewing = (async () => {
      while (performance.now() < until) {
        const start = performance.now();
        if ((await store.renew("held", held.leaseIdHash)) === undefined) throw new Error("the held lease was lost");
        renewals.push(performance.now() - start);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    lag.enable();
    cpu = process.cpuUsage();
    const many = await cycles(store, 64, until);
    const manyCpu = process.cpuUsage(cpu);
    lag.disable();
    await renewing;
    renewals.sort((a, b) => a - b);
    const msPerCycle = (usage, n) => round((usage.user + usage.system) / 1000 / n);
    return {
      mode,
      "1 caller /s": Math.round(one / seconds),
      "64 callers /s": Math.round(many / seconds),
      "cpu ms/cycle (1, 64)": [msPerCycle(oneCpu, one), msPerCycle(manyCpu, many)],
      // How many renewals got through (one every 5 ms at most): few means the loop was blocked.
      "renewals beside the 64": renewals.length,
      "renewal p50/p99 ms": [round(percentile(renewals, 50)), round(percentile(renewals, 99))],
      "loop delay samples, p99/max ms": [lag.count, round(lag.percentile(99) / 1e6), round(lag.max / 1e6)],
      fsyncs: { ...store.fsyncs.counts, "average ms": round(store.fsyncs.averageMs ?? NaN) },
    };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const mode of modes) console.log(JSON.stringify(await measure(mode)));
console.log(JSON.stringify({ seconds, threadpool: process.env.UV_THREADPOOL_SIZE ?? "4 (default)" }));
