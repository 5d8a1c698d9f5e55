#!/usr/bin/env node
// node scripts/measure-renewal-windows.mjs ADDRESS [LEASES] [SECONDS]: grants
// LEASES leases (default 10,000; ttl 10 s, 32 grants in flight) while already
// renewing each one every ttl/3 (open loop, over 100 KeepAlive streams), then
// prints the renewal round trip p50/p99/max per 10-second window for SECONDS
// (default 70). Shows the windows in which the renewal horizons written at
// the grants fall due (about 50 s after them) next to the ones around.
// Needs `npm run build` and a service at ADDRESS (`npm start`).
import { credentials } from "@grpc/grpc-js";
import { LockServiceClient } from "../dist/src/gen/mcplockd/v1/lock.js";

const [address, leases = "10000", seconds = "70"] = process.argv.slice(2);
if (address === undefined) {
  process.stderr.write("usage: node scripts/measure-renewal-windows.mjs ADDRESS [LEASES] [SECONDS]\n");
  process.exit(64);
}
const TTL = { seconds: 10, nanos: 0 };
const EVERY_MS = 10_000 / 3;
// Separate channels, as separate clients would have.
const clients = Array.from({ length: 16 }, () => new LockServiceClient(address, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }));
const streams = Array.from({ length: 100 }, (_, k) => clients[k % clients.length].keepAlive());
const sentAt = new Map();
let latencies = [];
let expired = 0;
for (const stream of streams) {
  stream.on("data", (response) => {
    if (response.expired) expired++;
    const sent = sentAt.get(response.leaseId);
    if (sent !== undefined) latencies.push(performance.now() - sent);
  });
}
let measuringSince = Infinity;
const keep = (leaseId, i) => {
  const stream = streams[i % streams.length];
  const renew = () => {
    if (performance.now() - measuringSince > Number(seconds) * 1000) return;
    sentAt.set(leaseId, performance.now());
    stream.write({ leaseId });
  };
  setTimeout(() => {
    renew();
    setInterval(renew, EVERY_MS);
  }, Math.random() * EVERY_MS);
};
const acquire = (i) =>
  new Promise((resolve, reject) =>
    clients[i % clients.length].acquire({ resource: `renewal-windows-${i}`, holder: "measure", ttl: TTL, metadata: {} }, (err, res) =>
      err ? reject(err) : resolve(res.lease.leaseId),
    ),
  );
let next = 0;
await Promise.all(
  Array.from({ length: 32 }, async () => {
    while (next < Number(leases)) {
      const i = next++;
      keep(await acquire(i), i);
    }
  }),
);
console.log(`granted ${leases} leases`);
measuringSince = performance.now();
latencies = [];
for (let window = 0; window < Number(seconds) / 10; window++) {
  await new Promise((resolve) => setTimeout(resolve, 10_000));
  const sorted = latencies.sort((a, b) => a - b);
  latencies = [];
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]?.toFixed(2);
  console.log(`${window * 10}-${window * 10 + 10} s: ${sorted.length} renewals, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${sorted.at(-1)?.toFixed(0)} ms, expired answers ${expired}`);
}
process.exit(0);
