#!/usr/bin/env node
// strace -f -c -e trace=fsync,rename,link,unlink,mkdir,rmdir,openat,statx,getdents64 \
//   node scripts/count-store-syscalls.mjs [ROOT] [CYCLES] [CALLERS]
// runs CYCLES (default 200) acquire+release cycles of the lease-file store of
// the built checkout at ROOT (default: this one) on one resource, after a
// warm-up grant, so that strace's counts divided by CYCLES are the file calls
// of one cycle: a figure that, unlike a throughput, does not move with the
// disk's load. Also takes protocol version 1 checkouts (they pass the time
// with each call). With CALLERS (default 1), that many callers on as many
// resources run CYCLES each at once: fewer directory fsyncs per cycle than
// with one caller is group commit at work.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const root = resolve(process.argv[2] || new URL("..", import.meta.url).pathname);
const cycles = Number(process.argv[3] ?? 200);
const callers = Number(process.argv[4] ?? 1);
const { LeaseFileStore } = await import(pathToFileURL(join(root, "dist/src/store/lease-file-store.js")).href);
const version1 = existsSync(join(root, "dist/src/store/token-reservations.js"));
const dir = mkdtempSync(join(tmpdir(), "mcp-lockd-syscalls-"));
const store = new LeaseFileStore({ dir });
await store.open();
const grant = { holder: "h", ttlMs: 30_000, metadata: {}, leaseIdHash: "0".repeat(64) };
const call = (method, ...args) => (version1 ? store[method](...args, Date.now()) : store[method](...args));
await Promise.all(
  Array.from({ length: callers }, async (_, caller) => {
    for (let i = 0; i <= cycles; i++) {
      await call("acquire", `r${caller}`, grant);
      await call("release", `r${caller}`, grant.leaseIdHash);
    }
  }),
);
rmSync(dir, { recursive: true, force: true });
