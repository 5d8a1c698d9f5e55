// Where a lease-file service's renewals spend their time (issue 12), printed
// every 2 s while it runs. A preload, not part of the service:
//
//   TRACE_RENEWALS_OUT=/tmp/trace.log node --import ./scripts/trace-renewals.mjs \
//     bin/mcp-lockd.js serve --lock-dir DIR
//
// then load it (scripts/measure-renewal-windows.mjs, or the bench's workload 5
// with the server started this way by hand). Needs `npm run build`. Each line:
//   renewals: fast (inside the horizon of our last write: a stat, the
//     promise moved in memory), inPlace (our own file rewritten in place,
//     protocol version 3 §5: by outcome written/lost/other) and slow (the
//     guarded write), the slow ones by why: no live promise of ours
//     (noPromise: after a restart, or the promise ran out) or the file not as
//     we wrote it (other); refused: why a renewal inside the horizon could
//     not just move the promise (identity, expired, pastHorizon); dropped:
//     promises that reads dropped (the file's identity was not ours);
//   inPlace / slow.wait / slow.total: the in-place rewrite's time, the slow
//     path's wait for the guard and its whole time; renew: the manager's
//     renew (lease lookup, mutex, store);
//   rewrites: background horizon rewrites finished (or skipped), their time
//     (guard, writes, fsyncs: on the thread pool), and the queue's length;
//   pool: a stat through libuv's thread pool every 20 ms (its queueing);
//   loop: event-loop delay; gc: pauses by kind (minor/major).
// Times are p50/p99/max in ms from log-scaled buckets (cheap to keep, so the
// tracing itself does not stall the loop it measures).
import { appendFileSync, promises as fsp } from "node:fs";
import { monitorEventLoopDelay, performance, PerformanceObserver } from "node:perf_hooks";
import { LockManager } from "../dist/src/core/lock-manager.js";
import { LeaseFileStore } from "../dist/src/store/lease-file-store.js";
import { PromisedExpiries } from "../dist/src/store/promised-expiries.js";

// It wraps private methods of the built code: say so loudly when they change.
for (const [owner, method] of [
  [LeaseFileStore, "guarded"],
  [LeaseFileStore, "refreshHorizon"],
  [LeaseFileStore, "rewriteInPlace"],
  [PromisedExpiries, "extend"],
  [PromisedExpiries, "apply"],
  [LockManager, "renew"],
]) {
  if (typeof owner.prototype[method] !== "function") throw new Error(`trace-renewals: ${owner.name}.${method} is gone; update this script`);
}

const out = process.env.TRACE_RENEWALS_OUT;
const write = out === undefined ? (line) => process.stderr.write(`${line}\n`) : (line) => appendFileSync(out, `${line}\n`);

/** Log-scaled buckets from 1 µs: 8 per doubling, enough for a p99. */
class Histogram {
  counts = new Map();
  n = 0;
  max = 0;
  add(ms) {
    const bucket = ms <= 0.001 ? 0 : Math.ceil(Math.log2(ms * 1000) * 8);
    this.counts.set(bucket, (this.counts.get(bucket) ?? 0) + 1);
    this.n++;
    if (ms > this.max) this.max = ms;
  }
  quantile(q) {
    let seen = 0;
    for (const bucket of [...this.counts.keys()].sort((a, b) => a - b)) {
      seen += this.counts.get(bucket);
      if (seen >= q * this.n) return Math.min(2 ** (bucket / 8) / 1000, this.max);
    }
    return this.max;
  }
  toString() {
    const f = (x) => (x < 10 ? x.toFixed(2) : x.toFixed(0));
    return this.n === 0 ? "-" : `${this.n}:${f(this.quantile(0.5))}/${f(this.quantile(0.99))}/${f(this.max)}`;
  }
}

let counts = new Map();
/** Resources whose renewal has just rewritten the file in place (see rewriteInPlace below). */
const justWritten = new Set();
let times = new Map();
const count = (name) => counts.set(name, (counts.get(name) ?? 0) + 1);
const time = (name, ms) => {
  if (!times.has(name)) times.set(name, new Histogram());
  times.get(name).add(ms);
};

// Why PromisedExpiries.extend refused (it returns undefined): read from its map.
const extend = PromisedExpiries.prototype.extend;
PromisedExpiries.prototype.extend = function (resource, leaseIdHash, identity, now) {
  const result = extend.call(this, resource, leaseIdHash, identity, now);
  // After a renewal's own rewrite, extend records it: not a fast renewal.
  if (justWritten.delete(resource)) {
    if (result === undefined) count("refused.afterWrite");
    return result;
  }
  if (result !== undefined) {
    count("fast");
    return result;
  }
  const promise = this.byResource.get(resource);
  const why =
    promise === undefined ? "noPromise"
    : identity !== promise.identity && promise.rewriting !== true ? "identity"
    : promise.expiresAt <= now ? "expired"
    : "pastHorizon";
  count(`refused.${why}`);
  return result;
};
const apply = PromisedExpiries.prototype.apply;
PromisedExpiries.prototype.apply = function (identity, lease) {
  const before = this.byResource.has(lease.resource);
  const result = apply.call(this, identity, lease);
  if (before && !this.byResource.has(lease.resource)) count("dropped");
  return result;
};

// A renewal's own rewrite in place (not a background one), by outcome; a
// renewal that then takes the guarded path did so for that outcome.
const inPlaceOutcome = new Map();
const refreshing = new Set();
const rewriteInPlace = LeaseFileStore.prototype.rewriteInPlace;
LeaseFileStore.prototype.rewriteInPlace = function (resource, own, now) {
  const running = rewriteInPlace.call(this, resource, own, now);
  if (refreshing.has(resource)) return running;
  const started = performance.now();
  return running.then(
    (outcome) => {
      count(`inPlace.${outcome.kind}`);
      time("inPlace", performance.now() - started);
      if (outcome.kind === "written") justWritten.add(resource);
      else inPlaceOutcome.set(resource, outcome.kind);
      return outcome;
    },
    (err) => {
      count("inPlace.error");
      throw err;
    },
  );
};

// The guarded step: a renewal that must write (waiting, on the thread pool's
// file system) or a background rewrite (try-once).
const guarded = LeaseFileStore.prototype.guarded;
LeaseFileStore.prototype.guarded = function (resource, io, work, options) {
  const background = options?.wait === false;
  const slowRenewal = !background && io === this.background && io !== this.io;
  if (!slowRenewal) return guarded.call(this, resource, io, work, options);
  count(`slow.${inPlaceOutcome.get(resource) ?? "noPromise"}`);
  inPlaceOutcome.delete(resource);
  const asked = performance.now();
  let waited = false;
  return guarded
    .call(this, resource, io, (hold) => {
      if (!waited) time("slow.wait", performance.now() - asked);
      waited = true;
      return work(hold);
    }, options)
    .finally(() => time("slow.total", performance.now() - asked));
};
const refreshHorizon = LeaseFileStore.prototype.refreshHorizon;
LeaseFileStore.prototype.refreshHorizon = function (resource, leaseIdHash) {
  const started = performance.now();
  refreshing.add(resource);
  return refreshHorizon.call(this, resource, leaseIdHash).finally(() => {
    refreshing.delete(resource);
    count("rewrites");
    time("rewrite", performance.now() - started);
    queueLength = this.horizons.due.size;
  });
};
let queueLength = 0;

const renew = LockManager.prototype.renew;
LockManager.prototype.renew = function (leaseId) {
  const started = performance.now();
  return renew.call(this, leaseId).finally(() => time("renew", performance.now() - started));
};

const loop = monitorEventLoopDelay({ resolution: 1 });
loop.enable();
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) time(entry.detail?.kind === 1 ? "gc.minor" : "gc.major", entry.duration);
}).observe({ entryTypes: ["gc"] });
setInterval(() => {
  const asked = performance.now();
  void fsp.stat("/").then(() => time("pool", performance.now() - asked));
}, 20).unref();
setInterval(() => {
  const c = (name) => counts.get(name) ?? 0;
  const t = (name) => String(times.get(name) ?? "-");
  const kinds = (prefix) => [...counts].filter(([name]) => name.startsWith(`${prefix}.`)).map(([name, n]) => `${name.slice(prefix.length + 1)}=${n}`).join(",") || 0;
  write(
    `${new Date().toISOString().slice(11, 19)} renewals fast=${c("fast")} inPlace=${kinds("inPlace")} slow=${kinds("slow")} ` +
      `refused=${kinds("refused")} dropped=${c("dropped")} ` +
      `inPlace=${t("inPlace")} slow.wait=${t("slow.wait")} slow.total=${t("slow.total")} renew=${t("renew")} ` +
      `rewrites=${c("rewrites")} rewrite=${t("rewrite")} queue=${queueLength} pool=${t("pool")} ` +
      `loop=${(loop.percentile(50) / 1e6).toFixed(1)}/${(loop.percentile(99) / 1e6).toFixed(1)}/${(loop.max / 1e6).toFixed(0)} ` +
      `gc.minor=${t("gc.minor")} gc.major=${t("gc.major")}`,
  );
  loop.reset();
  counts = new Map();
  times = new Map();
}, 2_000).unref();
