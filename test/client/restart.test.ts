import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { LeaseLostError, LockClient, UnavailableError } from "../../src/index.ts";
import { keepAliveDiagnostics } from "../../src/client/diagnostics.ts";
import { lossGuardMs } from "../../src/client/lease-keeper.ts";
import { nextRenewal } from "../helpers/keep-alive-events.ts";
import { startServiceProcess, type ServiceProcess } from "../helpers/service-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";

// The service is SIGKILLed while a client holds a lock. Lease files survive,
// so a service restarted on the same address and lock dir still knows the
// lease: the client reconnects and keeps it without signalling loss. If the
// service stays away past the lease's confirmed expiry, the client signals
// the loss by then.

async function leaseFileExpiry(lockDir: string, resource: string): Promise<number> {
  const record = JSON.parse(await readFile(join(lockDir, `${resource}.lock`), "utf8")) as { expires_at: string };
  return Date.parse(record.expires_at);
}

async function withService(body: (dir: string, start: (grpcListen?: string) => Promise<ServiceProcess>) => Promise<void>): Promise<void> {
  const dir = await makeTempDir("mcp-lockd-client-restart-");
  const services: ServiceProcess[] = [];
  try {
    await body(dir.path, async (grpcListen) => {
      const service = await startServiceProcess({ lockDir: dir.path, grpcListen: grpcListen ?? "127.0.0.1:0" });
      services.push(service);
      return service;
    });
  } finally {
    for (const service of services) await service.stop("SIGKILL");
    await dir.remove();
  }
}

test("service SIGKILLed and restarted while a lock is held: the client reconnects, keeps the lease, renewals continue", async (t) => {
  await withService(async (dir, start) => {
    const first = await start();
    const client = new LockClient({ address: first.grpcAddress });
    const observer = new LockClient({ address: first.grpcAddress });
    try {
      const diagnostics = client[keepAliveDiagnostics];
      const lock = await client.acquire("restarted", { ttl: 3_000, holder: "survivor" });
      const lastBefore = await withTimeout(nextRenewal(client, "restarted"), 5_000, "a renewal before the kill");
      const attemptsBefore = diagnostics.stats.reconnectAttempts;
      const scheduled: number[] = [];
      diagnostics.on("reconnect-scheduled", (event: { delayMs: number }) => scheduled.push(Math.round(event.delayMs)));

      const killedAt = performance.now();
      await first.stop("SIGKILL");
      const resumed = nextRenewal(client, "restarted");
      const second = await start(first.grpcAddress);
      const servingAt = performance.now();
      const firstAfter = await withTimeout(resumed, 3_000, "the first renewal after the restart");

      assert.equal(lock.signal.aborted, false, `lost: ${String(lock.signal.reason)}`);
      assert.ok(firstAfter.expiresAt > lastBefore.expiresAt);
      // Renewals go on at their usual pace.
      for (let i = 0; i < 3; i++) await withTimeout(nextRenewal(client, "restarted"), 3_000, "renewals after the restart");
      assert.equal(lock.signal.aborted, false);
      assert.ok(diagnostics.stats.streamsOpened >= 2);
      const [listed] = await observer.list("restarted");
      assert.equal(listed?.holder, "survivor");
      assert.equal(listed?.fencingToken, lock.fencingToken, "the same lease, not a new grant");
      assert.ok((await leaseFileExpiry(dir, "restarted")) >= lock.expiresAt.getTime(), "the client's expiry is never later than the file's");

      const attempts = diagnostics.stats.reconnectAttempts - attemptsBefore;
      assert.ok(attempts >= 1);
      t.diagnostic(
        `restart: down ${Math.round(servingAt - killedAt)} ms (kill to serving); renewal gap ${Math.round(firstAfter.at - lastBefore.at)} ms ` +
          `(last confirmed renewal before the kill to the first after); resumed ${Math.round(firstAfter.at - servingAt)} ms after serving; ` +
          `${attempts} reconnect attempt(s), delays ${scheduled.join(", ")} ms; ttl 3000 ms`,
      );
      await lock.release();
      assert.deepEqual(await observer.list("restarted"), []);
      void second;
    } finally {
      client.close();
      observer.close();
    }
  });
});

test("service down longer than the ttl: the loss signal fires no later than the last confirmed expiry", async (t) => {
  await withService(async (dir, start) => {
    const service = await start();
    const client = new LockClient({ address: service.grpcAddress });
    try {
      const diagnostics = client[keepAliveDiagnostics];
      const lock = await client.acquire("stranded", { ttl: 2_000 });
      await withTimeout(nextRenewal(client, "stranded"), 5_000, "a renewal before the kill");
      const lost = new Promise<{ reason: unknown; at: number }>((resolve) =>
        lock.signal.addEventListener("abort", () => resolve({ reason: lock.signal.reason, at: Date.now() }), { once: true }),
      );
      const fileExpiry = await leaseFileExpiry(dir, "stranded");
      await service.stop("SIGKILL");
      const killedAt = Date.now();
      const attemptsBefore = diagnostics.stats.reconnectAttempts;

      const { reason, at } = await withTimeout(lost, 5_000, "the loss signal");
      const confirmed = lock.expiresAt.getTime();
      assert.ok(reason instanceof LeaseLostError, String(reason));
      assert.equal(reason.reason, "unconfirmed");
      assert.ok(confirmed <= fileExpiry, `client expiry ${confirmed} is later than the service's ${fileExpiry}`);
      const lateness = at - confirmed;
      // Never later: the timer is set lossGuardMs (100 ms here) early, and
      // 50 ms more of margin covers a busy machine's scheduling.
      assert.ok(lateness <= 50, `signalled ${lateness} ms after the last confirmed expiry`);
      assert.ok(lateness >= -lossGuardMs(2_000) - 100, `signalled ${-lateness} ms before the last confirmed expiry`);
      t.diagnostic(
        `down past the ttl: loss signalled ${lateness} ms relative to the last confirmed expiry ` +
          `(${fileExpiry - confirmed} ms before the lease file's expires_at, the service's horizon; ${at - killedAt} ms after the kill; ` +
          `${diagnostics.stats.reconnectAttempts - attemptsBefore} reconnect attempts meanwhile)`,
      );
      assert.equal(diagnostics.stats.streamOpen, false, "no stream once nothing is held");
      await lock.release(); // the service is down: resolves anyway
    } finally {
      client.close();
    }
  });
});

test("service frozen (SIGSTOP): briefly, the lease is kept; past the ttl, the loss fires by the confirmed expiry", async (t) => {
  await withService(async (_dir, start) => {
    const service = await start();
    const client = new LockClient({ address: service.grpcAddress });
    const pid = service.child.pid!;
    try {
      const lock = await client.acquire("frozen", { ttl: 3_000 });
      await withTimeout(nextRenewal(client, "frozen"), 5_000, "a renewal");
      // Frozen for a third of the ttl: renewals queue up unanswered, then are answered.
      process.kill(pid, "SIGSTOP");
      await sleep(1_000);
      const resumed = nextRenewal(client, "frozen");
      process.kill(pid, "SIGCONT");
      await withTimeout(resumed, 3_000, "a renewal after SIGCONT");
      assert.equal(lock.signal.aborted, false);

      // Frozen past the ttl: no error, no answer; the loss timer alone must fire.
      await withTimeout(nextRenewal(client, "frozen"), 3_000, "a renewal");
      const lost = new Promise<number>((resolve) => lock.signal.addEventListener("abort", () => resolve(Date.now()), { once: true }));
      process.kill(pid, "SIGSTOP");
      const at = await withTimeout(lost, 6_000, "the loss signal");
      process.kill(pid, "SIGCONT");
      const lateness = at - lock.expiresAt.getTime();
      assert.ok(lock.signal.reason instanceof LeaseLostError && lock.signal.reason.reason === "unconfirmed");
      assert.ok(lateness <= 50 && lateness >= -lossGuardMs(3_000) - 100, `signalled ${lateness} ms relative to the confirmed expiry`);
      t.diagnostic(`frozen past the ttl: loss signalled ${lateness} ms relative to the last confirmed expiry`);
      await lock.release();
    } finally {
      try {
        process.kill(pid, "SIGCONT");
      } catch {
        // already gone
      }
      client.close();
    }
  });
});

test("release while the service is down rejects with UnavailableError; a retry after the restart releases", async () => {
  await withService(async (_dir, start) => {
    const first = await start();
    const client = new LockClient({ address: first.grpcAddress });
    try {
      const lock = await client.acquire("release-later", { ttl: 30_000 });
      await first.stop("SIGKILL");
      await assert.rejects(lock.release(), (err) => err instanceof UnavailableError);
      assert.equal(lock.signal.aborted, false, "a failed release is not a loss");
      await start(first.grpcAddress);
      // The channel may still be in its reconnection backoff (at most 2 s): retry.
      await waitFor(() => lock.release().then(() => true, () => false), "a release that gets through", 10_000, 100);
      assert.deepEqual(await client.list("release-later"), []);
    } finally {
      client.close();
    }
  });
});
