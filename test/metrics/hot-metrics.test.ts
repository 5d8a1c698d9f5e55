// The hot-path counters and histograms render as prom-client's would:
// cumulative buckets, +Inf, _sum and _count, labelled series, and a 0 for a
// metric without labels before its first event.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { HotCounter, HotHistogram } from "../../src/metrics/hot-metrics.ts";

test("hot counters and histograms in the text format", async () => {
  const registry = new Registry();
  const plain = new HotCounter(registry, "t_plain_total", "A counter without labels.", []);
  const byResult = new HotCounter(registry, "t_calls_total", "Calls by result.", ["result"]);
  const latency = new HotHistogram(registry, "t_latency_seconds", "Latency.", ["op"], [0.1, 1]);
  byResult.for({ result: "ok" }).inc();
  byResult.for({ result: "ok" }).inc(2);
  assert.equal(byResult.for({ result: "ok" }), byResult.for({ result: "ok" }), "one series per label set");
  const read = latency.for({ op: "read" });
  for (const value of [0.05, 0.1, 0.5, 3]) read.observe(value);
  const text = await registry.metrics();
  assert.match(text, /^# TYPE t_plain_total counter\nt_plain_total 0$/m);
  assert.match(text, /^t_calls_total\{result="ok"\} 3$/m);
  assert.match(text, /^# TYPE t_latency_seconds histogram$/m);
  assert.match(text, /^t_latency_seconds_bucket\{le="0.1",op="read"\} 2$/m, "a value on a bound counts in that bucket");
  assert.match(text, /^t_latency_seconds_bucket\{le="1",op="read"\} 3$/m);
  assert.match(text, /^t_latency_seconds_bucket\{le="\+Inf",op="read"\} 4$/m);
  assert.match(text, /^t_latency_seconds_sum\{op="read"\} 3.65$/m);
  assert.match(text, /^t_latency_seconds_count\{op="read"\} 4$/m);
  plain.for({}).inc();
  assert.match(await registry.metrics(), /^t_plain_total 1$/m);
});
