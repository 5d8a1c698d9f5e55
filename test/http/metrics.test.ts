// GET /metrics of the real service (child process, under the runtime
// MCP_LOCKD_TEST_RUNTIME names): the Prometheus text format, every metric the
// operations doc lists, counters and gauges that follow real calls, and no
// resource names or holders in labels.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { startServiceFixture, testRuntime, type ServiceFixture } from "../helpers/service-process.ts";
import { expectGrpcError, TestLockClient } from "../helpers/lock-client.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { startService } from "../../src/service.ts";
import { waitFor } from "../helpers/wait.ts";

const seconds = (s: number) => ({ seconds: s, nanos: 0 });

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a text exposition (no escapes in our label values). */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `a sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The value of the sample named `name` whose labels include `labels`; 0 when absent. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return found.reduce((sum, s) => sum + s.value, 0);
}

describe("GET /metrics", () => {
  let fx: ServiceFixture | undefined;
  let base: string;
  before(async () => {
    fx = await startServiceFixture();
    base = `http://${fx.service.httpAddress}`;
  });
  after(() => fx?.close());

  async function scrape(): Promise<{ text: string; samples: Sample[]; contentType: string | null }> {
    const response = await fetch(`${base}/metrics`);
    assert.equal(response.status, 200);
    const text = await response.text();
    return { text, samples: parseMetrics(text), contentType: response.headers.get("content-type") };
  }

  test("lists every documented metric in the Prometheus text format", async () => {
    const { text, contentType } = await scrape();
    assert.match(contentType ?? "", /^text\/plain; version=0\.0\.4/);
    const names = [
      ["mcplockd_acquire_total", "counter"],
      ["mcplockd_release_total", "counter"],
      ["mcplockd_lease_expired_total", "counter"],
      ["mcplockd_keepalive_total", "counter"],
      ["mcplockd_handoff_total", "counter"],
      ["mcplockd_store_errors_total", "counter"],
      ["mcplockd_leases_active", "gauge"],
      ["mcplockd_waiters", "gauge"],
      ["mcplockd_oldest_lease_age_seconds", "gauge"],
      ["mcplockd_keepalive_streams", "gauge"],
      ["mcplockd_unreadable_lease_files", "gauge"],
      ["mcplockd_store_up", "gauge"],
      ["mcplockd_fsyncs_total", "counter"],
      ["mcplockd_fsync_seconds_average", "gauge"],
      ["mcplockd_build_info", "gauge"],
      ["mcplockd_acquire_wait_seconds", "histogram"],
      ["mcplockd_lease_held_seconds", "histogram"],
      ["mcplockd_handoff_latency_seconds", "histogram"],
      ["mcplockd_store_op_duration_seconds", "histogram"],
      ["grpc_server_started_total", "counter"],
      ["grpc_server_handled_total", "counter"],
      ["grpc_server_msg_received_total", "counter"],
      ["grpc_server_msg_sent_total", "counter"],
    ];
    for (const [name, type] of names) {
      assert.match(text, new RegExp(`^# HELP ${name} \\S`, "m"), `${name} has HELP`);
      assert.match(text, new RegExp(`^# TYPE ${name} ${type}$`, "m"), `${name} is a ${type}`);
    }
    const samples = parseMetrics(text);
    const info = samples.find((s) => s.name === "mcplockd_build_info");
    assert.deepEqual(info?.labels, { version: "0.1.0", runtime: testRuntime(), store: "file" });
    assert.equal(valueOf(samples, "mcplockd_store_up"), 1);
    // Under Deno only our own metrics are registered (its process emulation breaks the default ones).
    assert.equal(/^process_cpu_seconds_total/m.test(text), testRuntime() !== "deno");
  });

  test("counters, gauges and gRPC metrics follow real calls; no resource or holder in any label", async () => {
    const raw = fx!.client;
    const before = (await scrape()).samples;
    const a = (await raw.acquire({ resource: "metrics-res", holder: "metrics-holder-a", ttl: seconds(30) })).lease!;
    await expectGrpcError(raw.acquire({ resource: "metrics-res", holder: "metrics-holder-b" }), status.ABORTED);
    const waiting = raw.acquire({ resource: "metrics-res", holder: "metrics-holder-c", waitTimeout: seconds(30) });
    await waitFor(async () => valueOf((await scrape()).samples, "mcplockd_waiters") === 1, "mcplockd_waiters to be 1");
    const middle = (await scrape()).samples;
    assert.equal(valueOf(middle, "mcplockd_leases_active"), valueOf(before, "mcplockd_leases_active") + 1);
    const oldest = valueOf(middle, "mcplockd_oldest_lease_age_seconds");
    assert.ok(oldest > 0 && oldest < 60, `the oldest lease is ${oldest} s old`);

    const keepAlive = raw.keepAlive();
    assert.equal((await keepAlive.renew(a.leaseId)).expired, false);
    await raw.release(a.leaseId); // hands over to the waiter
    const c = (await waiting).lease!;
    await expectGrpcError(raw.release(a.leaseId), status.NOT_FOUND);
    await raw.release(c.leaseId);
    keepAlive.end();
    await keepAlive.ended;

    const { text, samples } = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}) => valueOf(samples, name, labels) - valueOf(before, name, labels);
    assert.equal(delta("mcplockd_acquire_total", { mode: "try", result: "granted" }), 1);
    assert.equal(delta("mcplockd_acquire_total", { mode: "try", result: "busy" }), 1);
    assert.equal(delta("mcplockd_acquire_total", { mode: "wait", result: "granted" }), 1);
    assert.equal(delta("mcplockd_release_total", { result: "released" }), 2);
    assert.equal(delta("mcplockd_release_total", { result: "not_found" }), 1);
    assert.equal(delta("mcplockd_keepalive_total", { result: "renewed" }), 1);
    assert.equal(delta("mcplockd_handoff_total"), 1);
    assert.equal(delta("mcplockd_handoff_latency_seconds_count"), 1);
    assert.equal(delta("mcplockd_lease_held_seconds_count"), 2, "two leases ended (one handed over, one released)");
    assert.equal(delta("mcplockd_acquire_wait_seconds_count", { mode: "wait" }), 1);
    assert.ok(delta("mcplockd_store_op_duration_seconds_count", { op: "acquire" }) >= 1);
    assert.equal(delta("mcplockd_store_op_duration_seconds_count", { op: "handOver" }), 1);
    assert.equal(valueOf(samples, "mcplockd_waiters"), 0);
    assert.equal(valueOf(samples, "mcplockd_keepalive_streams"), 0);
    // Two grants (one a hand-over), each a temp file, a counter and a lock-dir fsync, wherever --fsync auto put them.
    const fsyncs = delta("mcplockd_fsyncs_total", { on: "pool" }) + delta("mcplockd_fsyncs_total", { on: "loop" });
    assert.ok(fsyncs >= 6, `${fsyncs} fsyncs counted`);
    assert.ok(valueOf(samples, "mcplockd_fsync_seconds_average") > 0);
    const acquire = { grpc_service: "mcplockd.v1.LockService", grpc_method: "Acquire", grpc_type: "unary" };
    assert.equal(delta("grpc_server_started_total", acquire), 3);
    assert.equal(delta("grpc_server_handled_total", { ...acquire, grpc_code: "OK" }), 2);
    assert.equal(delta("grpc_server_handled_total", { ...acquire, grpc_code: "Aborted" }), 1);
    assert.equal(delta("grpc_server_handled_total", { grpc_method: "Release", grpc_code: "NotFound" }), 1);
    const keepAliveLabels = { grpc_method: "KeepAlive", grpc_type: "bidi_stream" };
    assert.equal(delta("grpc_server_msg_received_total", keepAliveLabels), 1);
    assert.equal(delta("grpc_server_msg_sent_total", keepAliveLabels), 1);
    assert.equal(delta("grpc_server_handled_total", { ...keepAliveLabels, grpc_code: "OK" }), 1);

    for (const secret of ["metrics-res", "metrics-holder", a.leaseId, c.leaseId]) {
      assert.ok(!text.includes(secret), `${secret} appears in /metrics`);
    }
  });
});

test("--metrics off: no /metrics (404), and locks are served as before", async () => {
  const temp = await makeTempDir();
  const service = await startService({ lockDir: temp.path, grpcListen: "127.0.0.1:0", httpListen: "127.0.0.1:0", metrics: false });
  const client = new TestLockClient(service.grpcAddress);
  try {
    const response = await fetch(`http://${service.httpAddress}/metrics`);
    assert.equal(response.status, 404);
    await response.text();
    const { lease } = await client.acquire({ resource: "unmetered" });
    await client.release(lease!.leaseId);
  } finally {
    client.close();
    await service.stop();
    await temp.remove();
  }
});
