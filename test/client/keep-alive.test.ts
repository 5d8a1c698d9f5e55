import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rename, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LeaseLostError, LockClient } from "../../src/index.ts";
import { keepAliveDiagnostics } from "../../src/client/diagnostics.ts";
import { startServiceFixture, type ServiceFixture } from "../helpers/service-process.ts";
import { runProcess } from "../helpers/run-process.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";
import { setTimeout as sleep } from "node:timers/promises";

// Automatic renewal over one shared KeepAlive stream, and loss detection.

let fixture: ServiceFixture;
const clients: LockClient[] = [];

function newClient(): LockClient {
  const client = new LockClient({ address: fixture.service.grpcAddress });
  clients.push(client);
  return client;
}

before(async () => {
  fixture = await startServiceFixture();
});

after(async () => {
  for (const client of clients) await client[Symbol.asyncDispose]();
  await fixture.close();
});

/** Resolves after `count` "renewed" events for `resource`. */
function renewals(client: LockClient, resource: string, count: number): Promise<void> {
  const diagnostics = client[keepAliveDiagnostics];
  return new Promise((resolve) => {
    let seen = 0;
    const onRenewed = (event: { resource: string }) => {
      if (event.resource !== resource || ++seen < count) return;
      diagnostics.off("renewed", onRenewed);
      resolve();
    };
    diagnostics.on("renewed", onRenewed);
  });
}

function lossOf(signal: AbortSignal): Promise<{ reason: unknown; at: number }> {
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve({ reason: signal.reason, at: Date.now() }), { once: true }),
  );
}

test("a 1 s lease is renewed at about a third of its ttl and kept for several seconds", async () => {
  const client = newClient();
  const other = newClient();
  const lock = await client.acquire("renewed", { ttl: 1_000 });
  const started = Date.now();
  let previous = lock.expiresAt.getTime();
  const gaps: number[] = [];
  const diagnostics = client[keepAliveDiagnostics];
  const onRenewed = (event: { resource: string; expiresAt: Date }) => {
    gaps.push(event.expiresAt.getTime() - previous);
    previous = event.expiresAt.getTime();
  };
  diagnostics.on("renewed", onRenewed);
  await withTimeout(renewals(client, "renewed", 10), 10_000, "10 renewals");
  diagnostics.off("renewed", onRenewed);
  const held = Date.now() - started;
  assert.ok(held >= 2_500, `10 renewals at ttl/3 take about 3.3 s, took ${held} ms`);
  assert.equal(lock.signal.aborted, false);
  assert.ok(lock.expiresAt.getTime() > Date.now(), "the confirmed expiry is ahead");
  // Renewed about every 333 ms (the first may come early: counted from the Acquire's send).
  const median = [...gaps].sort((x, y) => x - y)[Math.floor(gaps.length / 2)]!;
  assert.ok(median > 250 && median < 500, `median renewal interval ${median} ms: ${gaps.join(", ")}`);
  await assert.rejects(other.acquire("renewed"), { name: "ResourceBusyError" });
  await lock.release();
});

test("all of a client's leases share one KeepAlive stream, closed after the last release", async () => {
  const client = newClient();
  const { stats } = client[keepAliveDiagnostics];
  const names = ["s1", "s2", "s3", "s4", "s5"];
  const locks = await Promise.all(names.map((name) => client.acquire(name, { ttl: 1_000 })));
  assert.equal(stats.leases, 5);
  await withTimeout(Promise.all(names.map((name) => renewals(client, name, 3))), 10_000, "3 renewals of each lease");
  assert.equal(stats.streamsOpened, 1, "one stream for all leases");
  assert.equal(stats.streamOpen, true);
  assert.equal(stats.reconnectAttempts, 0);
  assert.ok(stats.renewalsConfirmed >= 15);

  await Promise.all(locks.slice(0, 4).map((lock) => lock.release()));
  assert.equal(stats.streamOpen, true, "still open while a lease is held");
  await locks[4]!.release();
  assert.equal(stats.streamOpen, false, "closed with the last lease");
  assert.equal(stats.leases, 0);

  // The next lease opens a new one.
  const again = await client.acquire("s1", { ttl: 1_000 });
  assert.equal(stats.streamsOpened, 2);
  await again.release();
  assert.ok(locks.every((lock) => !lock.signal.aborted));
});

test("lease file removed behind the client's back: the signal fires with LeaseLostError at the next renewal", async () => {
  const client = newClient();
  const lock = await client.acquire("deleted", { ttl: 3_000 });
  const lost = lossOf(lock.signal);
  await withTimeout(renewals(client, "deleted", 1), 5_000, "a first renewal");
  const removedAt = Date.now();
  await unlink(join(fixture.lockDir, "deleted.lock"));
  const { reason, at } = await withTimeout(lost, 5_000, "the loss signal");
  assert.ok(reason instanceof LeaseLostError, String(reason));
  assert.equal(reason.reason, "expired");
  assert.equal(reason.resource, "deleted");
  // At the next renewal: within a third of the ttl (1 s), plus a margin.
  assert.ok(at - removedAt <= 1_000 + 500, `signalled ${at - removedAt} ms after the removal`);
  await lock.release(); // resolves although lost
});

test("lease taken over through the file protocol: the signal fires", async () => {
  const client = newClient();
  const lock = await client.acquire("replaced", { ttl: 3_000 });
  const lost = lossOf(lock.signal);
  // Another writer replaces the lease file (as after an expiry and a new grant).
  const path = join(fixture.lockDir, "replaced.lock");
  const now = Date.now();
  const { lease_id_sha256: _ours, ...record } = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
  // A file-protocol participant has no lease id, hence no lease_id_sha256.
  const replacement = { ...record, holder: "intruder", fencing_token: Number(record.fencing_token) + 100, acquired_at: new Date(now).toISOString(), expires_at: new Date(now + 60_000).toISOString(), ttl: 60 };
  await writeFile(`${path}.intruder.tmp`, JSON.stringify(replacement));
  await rename(`${path}.intruder.tmp`, path); // atomic, as the protocol asks
  const { reason } = await withTimeout(lost, 5_000, "the loss signal");
  assert.ok(reason instanceof LeaseLostError && reason.reason === "expired", String(reason));
});

test("a process exits on its own once it holds no lease (timers unref'd, stream closed)", async () => {
  const script = fileURLToPath(new URL("./exit-after-release.js", import.meta.url));
  const started = Date.now();
  const result = await runProcess(process.execPath, [script, fixture.service.grpcAddress], { timeoutMs: 20_000 });
  const elapsed = Date.now() - started;
  assert.equal(result.signal, null, `killed: ${result.stderr}`);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /released after 2 renewals/);
  // The lease had a 1 s ttl and the client was never closed: nothing may linger.
  assert.ok(elapsed < 10_000, `took ${elapsed} ms`);
});

test("granted after a wait longer than its ttl: the lease is renewed at once and kept", async () => {
  const holder = newClient();
  const waiter = newClient();
  const held = await holder.acquire("late-grant", { ttl: 10_000 });
  const pending = waiter.acquire("late-grant", { ttl: 1_000, wait: 30_000 });
  await waitFor(async () => (await holder.list("late-grant"))[0]?.waiters === 1, "the waiter to queue");
  // The wait itself is what is tested: longer than the waiter's ttl.
  await sleep(1_500);
  const firstRenewal = renewals(waiter, "late-grant", 1);
  await held.release();
  const lock = await withTimeout(pending, 5_000, "the grant");
  const grantedAt = Date.now();
  // Counted from receipt, not from the request sent 1.5 s ago (which would be expired already).
  assert.ok(lock.expiresAt.getTime() > grantedAt + 500, `expiresAt ${lock.expiresAt.getTime() - grantedAt} ms ahead`);
  await withTimeout(firstRenewal, 2_000, "the immediate renewal");
  assert.ok(Date.now() - grantedAt < 300, `renewed ${Date.now() - grantedAt} ms after the grant`);
  await withTimeout(renewals(waiter, "late-grant", 3), 5_000, "later renewals");
  assert.equal(lock.signal.aborted, false);
  await lock.release();
});
