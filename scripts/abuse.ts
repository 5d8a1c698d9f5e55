// npm run abuse [-- --heap-snapshot DIR]: abuses a real mcp-lockd on loopback
// (bounded in time) while a probe client measures Acquire+Release, and
// reports the service's RSS before and after. Phases, one after another:
// 5,000 waiting Acquires on one resource then all cancelled; 1,000 KeepAlive
// streams opened and dropped; 200 slow HTTP clients; oversized and malformed
// messages. Targets (docs/security.md): probe p99 under 50 ms during the
// abuse, no crash, RSS after within 25 % of its start.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { Client, credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { LockServiceClient, type AcquireResponse } from "../src/gen/mcplockd/v1/lock.ts";
import { processRssMiB } from "./bench/process-metrics.ts";
import { percentiles } from "./bench/stats.ts";

const CLI = fileURLToPath(new URL("../../bin/mcp-lockd.js", import.meta.url));
const WAITERS = 5_000;
const STREAMS = 1_000;
const SLOW_HTTP_CLIENTS = 200;
const CONNECTIONS = 10;
const seconds = (s: number) => ({ seconds: s, nanos: 0 });
/**
 * A client on a connection of its own: grpc-js otherwise shares one
 * connection among clients with the same target and options, and the
 * service's --max-streams-per-connection (1,000) would hold the rest back.
 */
const ownConnection = (address: string) => new LockServiceClient(address, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });

const { values } = parseArgs({ options: { "heap-snapshot": { type: "string" } } });

interface Service {
  child: ChildProcess;
  grpc: string;
  http: string;
  exited: Promise<unknown>;
}

async function startService(lockDir: string, heapSnapshotDir: string | undefined): Promise<Service> {
  const nodeFlags = heapSnapshotDir ? ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${heapSnapshotDir}`] : [];
  const child = spawn(
    process.execPath,
    [
      ...nodeFlags, CLI, "serve", "--lock-dir", lockDir, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
      // Room for the whole abuse, so that it is the memory of 5,000 queued
      // waiters that is measured (the defaults would refuse most of them).
      "--max-waiters-per-resource", String(WAITERS * 2), "--max-waiters", String(WAITERS * 2),
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const exited = once(child, "exit");
  let out = "";
  for await (const chunk of child.stdout!) {
    out += String(chunk);
    const match = /grpc=(\S+) http=(\S+)/.exec(out);
    if (match) return { child, grpc: match[1]!, http: match[2]!, exited };
  }
  throw new Error("the service exited before serving");
}

function acquire(client: LockServiceClient, resource: string, waitS: number, onCall?: (cancel: () => void) => void, ttlS = 30): Promise<AcquireResponse> {
  return new Promise((resolve, reject) => {
    const call = client.acquire({ resource, holder: "abuse", ttl: seconds(ttlS), waitTimeout: waitS ? seconds(waitS) : undefined, metadata: {} }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
    onCall?.(() => call.cancel());
  });
}

function release(client: LockServiceClient, leaseId: string): Promise<unknown> {
  return new Promise((resolve, reject) => client.release({ leaseId }, (err, res) => (err ? reject(err) : resolve(res))));
}

async function waitersOf(client: LockServiceClient, resource: string): Promise<number> {
  const { locks } = await new Promise<{ locks: Array<{ resource: string; waiters: number }> }>((resolve, reject) =>
    client.listLocks({ resourcePrefix: resource }, new Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res))),
  );
  return locks.find((lock) => lock.resource === resource)?.waiters ?? 0;
}

async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Acquire+Release of its own resource in a loop on its own connection, timing each cycle. */
function startProbe(address: string): { stop(): Promise<number[]>; failures: () => number } {
  const client = ownConnection(address);
  const samples: number[] = [];
  let failures = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const start = performance.now();
      try {
        const { lease } = await acquire(client, "probe", 0);
        await release(client, lease!.leaseId);
        samples.push(performance.now() - start);
      } catch {
        failures++;
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  return {
    failures: () => failures,
    async stop() {
      running = false;
      await loop;
      client.close();
      return samples;
    },
  };
}

async function waitersPhase(address: string): Promise<string> {
  const clients = Array.from({ length: CONNECTIONS }, () => ownConnection(address));
  const holder = clients[0]!;
  // Held for longer than the phase can take, so no waiter is ever granted.
  const { lease } = await acquire(holder, "hot", 0, undefined, 3_600);
  const cancels: Array<() => void> = [];
  const outcomes = Array.from({ length: WAITERS }, (_, i) =>
    acquire(clients[i % CONNECTIONS]!, "hot", 300, (cancel) => cancels.push(cancel)).then(
      () => "granted",
      (err: ServiceError) => status[err.code],
    ),
  );
  const observer = ownConnection(address);
  await until(async () => {
    const t = performance.now();
    const n = await waitersOf(observer, "hot");
    process.stderr.write(`abuse: ${n} waiting (ListLocks ${(performance.now() - t).toFixed(0)} ms)\n`);
    return n >= WAITERS;
  }, `${WAITERS} waiters`);
  process.stderr.write(`abuse: ${WAITERS} waiting; cancelling\n`);
  for (const cancel of cancels) cancel();
  const counts = new Map<string, number>();
  for (const outcome of await Promise.all(outcomes)) counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
  await until(async () => (await waitersOf(observer, "hot")) === 0, "the queue to empty");
  observer.close();
  await release(holder, lease!.leaseId);
  for (const client of clients) client.close();
  return `${WAITERS} waiters queued then cancelled: ${[...counts].map(([k, v]) => `${v} ${k}`).join(", ")}`;
}

async function streamsPhase(address: string): Promise<string> {
  const clients = Array.from({ length: CONNECTIONS }, () => ownConnection(address));
  const { lease } = await acquire(clients[0]!, "kept", 0, undefined, 3_600);
  let answered = 0;
  const streams = await Promise.all(
    Array.from({ length: STREAMS }, async (_, i) => {
      const stream = clients[i % CONNECTIONS]!.keepAlive();
      stream.on("error", () => {});
      const first = once(stream, "data");
      stream.write({ leaseId: lease!.leaseId });
      await first;
      answered++;
      return stream;
    }),
  );
  for (const stream of streams) stream.cancel();
  await release(clients[0]!, lease!.leaseId);
  for (const client of clients) client.close();
  return `${STREAMS} KeepAlive streams opened (${answered} renewed once) and dropped`;
}

async function slowHttpPhase(address: string): Promise<string> {
  const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
  const sockets: Socket[] = [];
  for (let i = 0; i < SLOW_HTTP_CLIENTS; i++) {
    const socket = connect({ host, port });
    socket.on("error", () => {});
    socket.write("GET /health/locks HTTP/1.1\r\nHost: x\r\n");
    sockets.push(socket);
  }
  // A byte now and then: never finishing the headers.
  const drip = setInterval(() => sockets.forEach((socket) => socket.writable && socket.write("X")), 500);
  const healthz = await fetch(`http://${address}/healthz`).then((r) => r.status);
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  clearInterval(drip);
  const stillOpen = sockets.filter((socket) => !socket.destroyed).length;
  for (const socket of sockets) socket.destroy();
  return `${SLOW_HTTP_CLIENTS} slow HTTP clients for 3 s: /healthz answered ${healthz} meanwhile; ${stillOpen} still open then (the 10 s header timeout closes them)`;
}

async function badMessagesPhase(address: string): Promise<string> {
  const raw = new Client(address, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  const identity = (bytes: Buffer) => bytes;
  const statuses = new Map<string, number>();
  const send = (method: string, body: Buffer) =>
    new Promise<void>((resolve) =>
      raw.makeUnaryRequest(`/mcplockd.v1.LockService/${method}`, identity, identity, body, new Metadata(), {}, (err) => {
        const name = err ? status[err.code]! : "OK";
        statuses.set(`${method} ${name}`, (statuses.get(`${method} ${name}`) ?? 0) + 1);
        resolve();
      }),
    );
  const oversized = Buffer.alloc(200 * 1024, 0x41);
  const garbage = () => Buffer.from(Array.from({ length: 1 + Math.floor(Math.random() * 64) }, () => Math.floor(Math.random() * 256)));
  const calls: Array<Promise<void>> = [];
  for (const method of ["Acquire", "Release", "ListLocks", "ForceRelease"]) {
    for (let i = 0; i < 50; i++) calls.push(send(method, oversized));
    for (let i = 0; i < 250; i++) calls.push(send(method, garbage()));
  }
  await Promise.all(calls);
  raw.close();
  return `oversized (200 KiB) and random-byte messages, by method and status: ${[...statuses].sort().map(([k, v]) => `${k} ${v}`).join("; ")}`;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "mcp-lockd-abuse-"));
  const service = await startService(join(dir, "locks"), values["heap-snapshot"]);
  const pid = service.child.pid!;
  try {
    // Warm up (JIT, connection, first files) before the baseline.
    const warm = startProbe(service.grpc);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const warmSamples = await warm.stop();
    const rssStart = (await processRssMiB(pid))!;
    const probe = startProbe(service.grpc);
    const phaseNotes: string[] = [];
    for (const [name, phase] of [
      ["waiters", () => waitersPhase(service.grpc)],
      ["streams", () => streamsPhase(service.grpc)],
      ["slow HTTP", () => slowHttpPhase(service.http)],
      ["bad messages", () => badMessagesPhase(service.grpc)],
    ] as const) {
      const started = performance.now();
      process.stderr.write(`abuse: ${name}...\n`);
      const note = await phase();
      phaseNotes.push(`- ${name} (${((performance.now() - started) / 1000).toFixed(1)} s): ${note}; RSS ${(await processRssMiB(pid))!.toFixed(0)} MiB`);
    }
    const samples = await probe.stop();
    const rssAfterAbuse = (await processRssMiB(pid))!;
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const rssSettled = (await processRssMiB(pid))!;
    const p = percentiles(samples);
    const crashed = service.child.exitCode !== null || service.child.signalCode !== null;
    console.log(`mcp-lockd abuse run, ${new Date().toISOString()}, Node ${process.version}`);
    console.log(phaseNotes.join("\n"));
    console.log(
      `probe Acquire+Release during the abuse: ${p.count} cycles, ${probe.failures()} failed; p50 ${p.p50.toFixed(2)} ms, p90 ${p.p90.toFixed(2)} ms, p99 ${p.p99.toFixed(2)} ms, max ${p.max.toFixed(1)} ms (before: p99 ${percentiles(warmSamples).p99.toFixed(2)} ms)`,
    );
    console.log(
      `service RSS: start ${rssStart.toFixed(0)} MiB, right after ${rssAfterAbuse.toFixed(0)} MiB, 5 s later ${rssSettled.toFixed(0)} MiB (${(((rssSettled - rssStart) / rssStart) * 100).toFixed(0)} % above start); crashed: ${crashed ? "YES" : "no"}`,
    );
    console.log(`targets: p99 < 50 ms ${p.p99 < 50 ? "met" : "MISSED"}; RSS <= +25 % ${rssSettled <= rssStart * 1.25 ? "met" : "MISSED"}`);
    const snapshotDir = values["heap-snapshot"];
    if (snapshotDir) {
      const before = new Set(await readdir(snapshotDir));
      service.child.kill("SIGUSR2");
      await until(async () => (await readdir(snapshotDir)).some((f) => f.endsWith(".heapsnapshot") && !before.has(f)), "the heap snapshot", 60_000);
      console.log(`heap snapshot written to ${snapshotDir}`);
    }
  } finally {
    service.child.kill("SIGTERM");
    await service.exited;
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
