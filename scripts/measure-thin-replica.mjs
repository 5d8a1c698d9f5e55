#!/usr/bin/env node
// node scripts/measure-thin-replica.mjs [seconds] [rounds]: the most that
// any mcp-lockd replica on etcd could reach on this machine against etcd's
// own v3lock (issue 9's uncontended target: at least 0.8×). Needs `npm run
// build` and Debian's etcd-server. On one fresh etcd member, one client
// loops acquire+release for `seconds`, in interleaved rounds, against:
//   v3lock   etcd's Lock and Unlock, straight to etcd (as the bench's
//            workload 9 asks it);
//   thin     the thinnest replica possible: a grpc-js server of the same
//            LockService whose Acquire is one Txn (put the key if absent)
//            and whose Release is one Txn (delete it), through the etcd
//            store's own client (EtcdClient, the lean Txn path). No lease,
//            no queue, no fencing, no watch: one hop and nothing more;
//   replica  `mcp-lockd serve --store etcd`, as the bench runs it.
// Prints cycles/s and the server's CPU per cycle (etcd's for v3lock, the
// replica's own otherwise; etcd's CPU is reported beside it).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(import.meta.url), "..", "..");
const dist = (path) => import(join(root, "dist", path));

if (process.argv[2] === "--serve-thin") await serveThin(process.argv[3]);
else await measure(Number(process.argv[2] ?? 5), Number(process.argv[3] ?? 3));

/** The thin replica: prints its address once it serves. */
async function serveThin(etcdAddress) {
  const grpc = await import("@grpc/grpc-js");
  const { LockServiceService } = await dist("src/gen/mcplockd/v1/lock.js");
  const { Compare_CompareResult, Compare_CompareTarget } = await dist("src/gen/etcd/etcdserverpb/rpc.js");
  const { EtcdClient } = await dist("src/store/etcd/etcd-client.js");
  const etcd = new EtcdClient({ endpoints: [`http://${etcdAddress}`] });
  const key = (resource) => Buffer.from(`/thin/${resource}`);
  const put = (resource, holder) => ({ requestPut: { key: key(resource), value: Buffer.from(holder), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } });
  const absent = (resource) => ({ result: Compare_CompareResult.EQUAL, target: Compare_CompareTarget.VERSION, key: key(resource), version: 0n, rangeEnd: Buffer.alloc(0) });
  const answer = (promise, callback) => promise.then((value) => callback(null, value), (err) => callback({ code: grpc.status.UNAVAILABLE, details: String(err) }));
  const server = new grpc.Server();
  server.addService(LockServiceService, {
    acquire: ({ request }, callback) =>
      answer(
        etcd.txn({ compare: [absent(request.resource)], success: [put(request.resource, request.holder)], failure: [] }).then((response) => {
          if (!response.succeeded) throw new Error("busy");
          const revision = Number(response.header?.revision ?? 0n);
          return { lease: { leaseId: request.resource, resource: request.resource, holder: request.holder, fencingToken: revision, acquiredAt: undefined, expiresAt: undefined, ttl: request.ttl, metadata: {}, waiters: 0, state: "held" } };
        }),
        callback,
      ),
    release: ({ request }, callback) =>
      answer(
        etcd.txn({ compare: [], success: [{ requestDeleteRange: { key: key(request.leaseId), rangeEnd: Buffer.alloc(0), prevKv: false } }], failure: [] }).then(() => ({ released: true })),
        callback,
      ),
  });
  const port = await new Promise((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))));
  console.log(`thin serving grpc=127.0.0.1:${port}`);
}

async function measure(seconds, rounds) {
  const { ensureEtcd, startEtcd } = await dist("scripts/bench/systems/etcd.js");
  const { startMcpLockd } = await dist("scripts/bench/systems/mcp-lockd.js");
  const { startServerProcess } = await dist("scripts/bench/systems/server-process.js");
  const { EtcdDriver } = await dist("scripts/bench/drivers/etcd.js");
  const { McpLockdDriver } = await dist("scripts/bench/drivers/mcp-lockd.js");
  const { processCpuMs: cpuMs } = await dist("scripts/bench/process-metrics.js");
  const install = ensureEtcd((message) => console.error(message));
  if (!install.path) throw new Error(install.unavailable);
  const dir = mkdtempSync(join(tmpdir(), "mcp-lockd-thin-"));
  const started = [];
  const systems = [];
  try {
    const etcd = await startEtcd(install.path, join(dir, "data"));
    started.push(etcd.server);
    const thin = await startServerProcess({
      command: process.execPath,
      args: [fileURLToPath(import.meta.url), "--serve-thin", etcd.grpcAddress],
      ready: /thin serving grpc=(\S+)/,
      env: process.env,
    });
    started.push(thin);
    const replica = await startMcpLockd("node", { etcd: `http://${etcd.grpcAddress}`, prefix: "/replica/" });
    started.push(replica);
    systems.push(
      { name: "v3lock", pid: etcd.server.pid, client: await new EtcdDriver({ system: "etcd", grpcAddress: etcd.grpcAddress }).openClient() },
      { name: "thin", pid: thin.pid, client: await new McpLockdDriver({ system: "mcp-lockd", grpcAddress: thin.match[1], httpAddress: "unused" }).openClient() },
      { name: "replica", pid: replica.pid, client: await new McpLockdDriver({ system: "mcp-lockd", grpcAddress: replica.match[1], httpAddress: replica.match[2] }).openClient() },
    );
    for (const system of systems) for (let i = 0; i < 200; i++) await system.client.acquireRelease(`warm-${system.name}`);
    for (let round = 1; round <= rounds; round++) {
      for (const system of systems) {
        const resource = `r-${system.name}-${round}`;
        const [serverBefore, etcdBefore] = [await cpuMs(system.pid), await cpuMs(etcd.server.pid)];
        const start = performance.now();
        let cycles = 0;
        while (performance.now() - start < seconds * 1000) {
          await system.client.acquireRelease(resource);
          cycles++;
        }
        const elapsed = (performance.now() - start) / 1000;
        const server = ((await cpuMs(system.pid)) - serverBefore) / cycles;
        const etcdCpu = ((await cpuMs(etcd.server.pid)) - etcdBefore) / cycles;
        console.log(
          `round ${round} ${system.name.padEnd(7)} ${String(Math.round(cycles / elapsed)).padStart(5)} cycles/s;` +
            ` server CPU ${server.toFixed(2)} ms per cycle` +
            (system.name === "v3lock" ? "" : `, etcd ${etcdCpu.toFixed(2)} ms`),
        );
      }
    }
  } finally {
    for (const system of systems) await system.client.close();
    for (const server of started.reverse()) await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
