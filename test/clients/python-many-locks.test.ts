// One Python LockClient (clients/python) takes and releases more locks than
// the service allows streams per connection: the Python twin of
// test/client/many-locks.test.ts. The TypeScript client leaked its KeepAlive
// stream (a cancel grpc-js lost while the stream was opening) and stopped
// getting answers once it had taken --max-streams-per-connection locks. The
// Python client opens a stream with its first lease and closes it after its
// last too, with its own threads (a keeper, a reader, and grpcio's request
// consumer per stream): none of that may pile up on either side.

import { describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { keepAliveStreams } from "../helpers/service-metrics.ts";
import { startServiceProcess, type ServiceProcess } from "../helpers/service-process.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";
import { PythonLeaseDriver } from "./python-lease-driver.ts";

const STREAM_LIMIT = 10;
const LOCKS = 30;
// An answer slower than this means the client is stuck (its calls time out after 5 s).
const ANSWER_MS = 3_000;

async function withService(body: (service: ServiceProcess, py: PythonLeaseDriver) => Promise<void>): Promise<void> {
  const temp = await makeTempDir("mcp-lockd-py-many-locks-");
  const service = await startServiceProcess({ lockDir: temp.path, extraArgs: ["--max-streams-per-connection", String(STREAM_LIMIT)] });
  const py = await PythonLeaseDriver.start("grpc", service.grpcAddress, { timeout: 5 });
  try {
    await body(service, py);
  } finally {
    await py.close();
    await service.stop("SIGKILL");
    await temp.remove();
  }
}

/** Locks `resource` (ttl 1 s, the least) and checks the answer came in time. */
async function lockInTime(py: PythonLeaseDriver, id: string, resource: string): Promise<number> {
  const started = Date.now();
  const reply = await py.call({ op: "lock", id, resource, ttl: 1, watch: false });
  const tookMs = Date.now() - started;
  assert.ok(reply.ok, `lock ${id} failed after ${tookMs} ms: ${JSON.stringify(reply)}\n${py.stderr().slice(-2_000)}`);
  assert.ok(tookMs < ANSWER_MS, `lock ${id} answered after ${tookMs} ms`);
  return tookMs;
}

async function threads(py: PythonLeaseDriver): Promise<number> {
  return (await py.ok({ op: "session" })).threads!;
}

/** Waits until the Python process runs `count` threads; fails naming the ones it runs. */
async function awaitThreads(py: PythonLeaseDriver, count: number, when: string): Promise<void> {
  await waitFor(async () => (await threads(py)) === count, `${count} threads in the Python client ${when}`, 5_000, 5).catch(async (err) => {
    const { thread_names } = await py.ok({ op: "session" });
    throw new Error(`${(err as Error).message}; it runs ${JSON.stringify(thread_names)}`);
  });
}

// Each test has its own service and Python process; they run side by side (most of their time
// is spent waiting for renewals).
describe("python LockClient: many locks through one client", { concurrency: true }, () => {
  test("python LockClient: 30 locks in turn through one client, more than the service's streams per connection; no stream or thread left", async (t: TestContext) => {
    await withService(async (service, py) => {
      const baseline = await threads(py);
      let slowestMs = 0;
      for (let i = 0; i < LOCKS; i++) {
        // Every other lock is renewed on its stream before the release; the others are released
        // as soon as the stream is open, the moment at which grpc-js lost the TypeScript client's cancel.
        const renewed = i % 2 === 0;
        const renewal = renewed ? py.nextRenewal(service.grpcAddress) : undefined;
        slowestMs = Math.max(slowestMs, await lockInTime(py, `l${i}`, "many"));
        if (renewal) await withTimeout(renewal, ANSWER_MS, `a renewal of lock ${i}`);
        await py.ok({ op: "release", id: `l${i}`, once_stream_open: !renewed });
        // The client holds nothing: the service has no stream of it open.
        await waitFor(async () => (await keepAliveStreams(service.httpAddress)) === 0, `no KeepAlive stream open after lock ${i}`, 5_000, 5);
      }
      const session = await py.ok({ op: "session" });
      // Each lock opened a stream of its own (the keeper may rarely carry one over to the next lock):
      // far more than the service allows at once on the connection, so a leak would have shown.
      assert.ok(session.streams_opened! > STREAM_LIMIT, `only ${session.streams_opened} KeepAlive streams were opened`);
      assert.ok(session.renewals_confirmed! >= LOCKS / 2, `${session.renewals_confirmed} renewals confirmed`);
      await awaitThreads(py, baseline, "once it holds nothing");
      t.diagnostic(`${session.streams_opened} streams opened, ${session.renewals_confirmed} renewals, slowest lock ${slowestMs} ms, ${baseline} threads before and after`);
    });
  });

  test("python LockClient: with one lease held throughout, 30 more locks share its one stream", async (t: TestContext) => {
    await withService(async (service, py) => {
      const baseline = await threads(py);
      await lockInTime(py, "held", "held");
      await waitFor(async () => (await keepAliveStreams(service.httpAddress)) === 1, "the held lease's KeepAlive stream", 5_000, 5);
      const holding = await threads(py);
      let slowestMs = 0;
      for (let i = 0; i < LOCKS; i++) {
        slowestMs = Math.max(slowestMs, await lockInTime(py, `l${i}`, "many"));
        await py.ok({ op: "release", id: `l${i}` });
      }
      const session = await py.ok({ op: "session" });
      assert.equal(session.streams_opened, 1, "every lease rode the held lease's stream");
      assert.equal(await keepAliveStreams(service.httpAddress), 1);
      await awaitThreads(py, holding, "while it holds one lease");
      // The held lease (ttl 1 s) is still renewed over that stream, and was never lost.
      await withTimeout(py.nextRenewal(service.grpcAddress), ANSWER_MS, "a renewal of the held lease");
      const held = await py.ok({ op: "state", id: "held" });
      assert.equal(held.lost, false, JSON.stringify(held));
      assert.equal((await py.ok({ op: "session" })).streams_opened, 1);

      await py.ok({ op: "release", id: "held" });
      await waitFor(async () => (await keepAliveStreams(service.httpAddress)) === 0, "no KeepAlive stream open after the last release", 5_000, 5);
      await awaitThreads(py, baseline, "once it holds nothing");
      t.diagnostic(`1 stream, ${held.renewals_confirmed} renewals, slowest lock ${slowestMs} ms; threads ${baseline} idle, ${holding} holding`);
    });
  });
});
