#!/usr/bin/env node
// node scripts/measure-store-cycle.mjs [root] [seconds]: uncontended
// acquire+release cycles per second of the lease-file store alone (no gRPC),
// 1 caller on 1 resource and 64 callers on 64 resources, in a fresh temp dir,
// and the process's CPU time (all threads: the thread pool's calls too) per
// cycle, with the thread pool's size (UV_THREADPOOL_SIZE) for the record.
// `root` is a built checkout (default: this one), so two versions can be
// compared on the same disk minutes apart:
//   node scripts/measure-store-cycle.mjs /path/to/old/checkout
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const root = resolve(process.argv[2] || new URL("..", import.meta.url).pathname);
const seconds = Number(process.argv[3] ?? 3);
const { LeaseFileStore } = await import(pathToFileURL(join(root, "dist/src/store/lease-file-store.js")).href);

async function run(callers) {
  const dir = mkdtempSync(join(tmpdir(), "mcp-lockd-store-cycle-"));
  const store = new LeaseFileStore({ dir });
  await store.open();
  let cycles = 0;
  const cpuBefore = process.cpuUsage();
  const until = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: callers }, async (_, i) => {
      const grant = { holder: `h${i}`, ttlMs: 30_000, metadata: {}, leaseIdHash: String(i).padStart(64, "0") };
      while (Date.now() < until) {
        const outcome = await store.acquire(`r${i}`, grant, Date.now());
        if (!("granted" in outcome)) throw new Error("not granted");
        await store.release(`r${i}`, grant.leaseIdHash, Date.now());
        cycles++;
      }
    }),
  );
  const cpu = process.cpuUsage(cpuBefore);
  rmSync(dir, { recursive: true, force: true });
  return { perSecond: Math.round(cycles / seconds), cpuMsPerCycle: Number(((cpu.user + cpu.system) / 1000 / cycles).toFixed(2)) };
}

const one = await run(1);
const many = await run(64);
console.log(
  JSON.stringify({
    root,
    "1 caller": one.perSecond,
    "64 callers": many.perSecond,
    "cpu ms/cycle": [one.cpuMsPerCycle, many.cpuMsPerCycle],
    threadpool: process.env.UV_THREADPOOL_SIZE ?? "4 (default)",
  }),
);
