#!/usr/bin/env node
// node scripts/measure-listing-build.mjs [leases] [listings]: the server's
// own work for one listing, in process, without the network: building the
// answer afresh from LockManager.list() (what the edges did before issue 12)
// against the cached listing (LockListing), for GET /health/locks' JSON and
// ListLocks' protobuf. `leases` (default 10,000, ttl 10 min) are granted by
// a real LockManager over a LeaseFileStore in a temp dir (on tmpfs with
// MEASURE_LOCK_DIR_PARENT=/dev/shm), and 60 of them are renewed before each
// of the `listings` (default 200) timed answers, as 3,000 renewals/s would
// between listings 20 ms apart. Prints p50 and p99. Needs `npm run build`.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const load = (path) => import(join(root, "dist/src", path));
const { LockManager } = await load("core/lock-manager.js");
const { LeaseFileStore } = await load("store/lease-file-store.js");
const { encodeHealthEntry, HEALTH_LOCKS_FRAMING, toHealthEntry } = await load("http/health-server.js");
const { encodeListedLease, toListedLease } = await load("grpc/convert.js");
const { ListLocksResponse } = await load("gen/mcplockd/v1/lock.js");

const leases = Number(process.argv[2] ?? 10_000);
const listings = Number(process.argv[3] ?? 200);
const dir = mkdtempSync(join(process.env.MEASURE_LOCK_DIR_PARENT ?? tmpdir(), "measure-listing-build-"));
const manager = new LockManager({ store: new LeaseFileStore({ dir }) });
await manager.start();
const ids = [];
for (let i = 0; i < leases; i += 64) {
  const batch = Array.from({ length: Math.min(64, leases - i) }, (_, k) =>
    manager.acquire({ resource: `held-${i + k}`, holder: `keeper-${(i + k) % 2}`, ttlMs: 600_000, metadata: { job: `held-${i + k}` } }),
  );
  for (const granted of await Promise.all(batch)) ids.push(granted.leaseId);
}
const http = manager.cachedListing(({ state, waiters }) => encodeHealthEntry(state, waiters));
const grpc = manager.cachedListing(({ state, waiters }) => encodeListedLease(state, waiters));
const ways = {
  "GET /health/locks, built afresh": async () =>
    Buffer.from(JSON.stringify({ locks: (await manager.list()).map(({ state, waiters }) => toHealthEntry(state, waiters)) }) + "\n"),
  "GET /health/locks, cached": () => http.answer("", undefined, HEALTH_LOCKS_FRAMING),
  "ListLocks, built afresh": async () =>
    Buffer.from(ListLocksResponse.encode({ locks: (await manager.list("")).map(({ state, waiters }) => toListedLease(state, waiters)) }).finish()),
  "ListLocks, cached": () => grpc.answer(""),
};
let renewed = 0;
for (const [name, answer] of Object.entries(ways)) {
  const times = [];
  let bytes = 0;
  for (let i = 0; i < listings; i++) {
    for (let k = 0; k < 60; k++) await manager.renew(ids[renewed++ % ids.length]);
    const started = performance.now();
    bytes = (await answer()).length;
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  const q = (p) => times[Math.min(times.length - 1, Math.ceil(p * times.length) - 1)].toFixed(2);
  console.log(`${name}: ${leases} entries, ${bytes} bytes, p50 ${q(0.5)} ms, p99 ${q(0.99)} ms (${listings} answers)`);
}
manager.close();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
