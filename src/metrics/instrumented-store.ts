import { performance } from "node:perf_hooks";
import type { HandOverOutcome, LeaseStore } from "../core/lease-store.ts";
import type { ServiceMetrics } from "./service-metrics.ts";

/** The store operations timed and counted; anything else passes straight through. */
const TIMED_OPS = new Set(["read", "list", "acquire", "renew", "release", "handOver", "reclaimIfExpired"]);

/**
 * The same store, with every operation timed and its failures counted. A
 * proxy, so methods a store gains later pass through untouched. A hand-over
 * that granted is also the hand-over latency.
 */
export function instrumentStore(store: LeaseStore, metrics: ServiceMetrics): LeaseStore {
  const wrapped = new Map<string, (...args: unknown[]) => Promise<unknown>>();
  const handoffLatency = metrics.handoffLatencySeconds.for({});
  const wrap = (op: string, method: (...args: unknown[]) => Promise<unknown>) => {
    const duration = metrics.storeOpDurationSeconds.for({ op });
    return async (...args: unknown[]) => {
      const startedAt = performance.now();
      try {
        const result = await method.apply(store, args);
        if (op === "handOver" && (result as HandOverOutcome).granted !== undefined) {
          handoffLatency.observe((performance.now() - startedAt) / 1000);
        }
        return result;
      } catch (err) {
        metrics.storeErrorsTotal.for({ op, code: errorCode(err) }).inc();
        throw err;
      } finally {
        duration.observe((performance.now() - startedAt) / 1000);
      }
    };
  };
  return new Proxy(store, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      if (typeof property !== "string" || !TIMED_OPS.has(property)) return value.bind(target);
      let timed = wrapped.get(property);
      if (timed === undefined) wrapped.set(property, (timed = wrap(property, value as (...args: unknown[]) => Promise<unknown>)));
      return timed;
    },
  });
}

/** errno (EACCES, ENOSPC...) when the store said, else the error's code or class. */
function errorCode(err: unknown): string {
  const { errno, code, name } = (err ?? {}) as { errno?: unknown; code?: unknown; name?: unknown };
  for (const candidate of [errno, code, name]) if (typeof candidate === "string" && candidate !== "") return candidate;
  return "unknown";
}
