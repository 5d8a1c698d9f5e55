import { status, ServerInterceptingCall, type ServerInterceptor } from "@grpc/grpc-js";
import type { LockEvent } from "../core/lock-events.ts";
import type { LockManager } from "../core/lock-manager.ts";
import type { RejectedCallListener } from "../metrics/grpc-metrics-interceptor.ts";
import type { Logger, LogLevel } from "./logger.ts";

// What the log says about locks and calls: every grant, release, expiry and
// hand-over at debug; calls the service refused at info (warn for its own
// failures). Holders and tokens, never lease ids.

/** Logs the manager's lock events at debug (nothing is subscribed below debug). */
export function logLockEvents(manager: LockManager, logger: Logger): () => void {
  if (!logger.enabled("debug")) return () => {};
  // Renewals are left out: one per lease every ttl/3, too many to be useful.
  return manager.subscribe((event: LockEvent) => {
    const ended = event.type === "RELEASED" || event.type === "EXPIRED" || event.type === "FORCE_RELEASED";
    const heldSince = event.type === "HANDED_OVER" ? event.previous?.acquiredAt : ended ? event.acquiredAt : undefined;
    logger.debug(`lock ${event.type.toLowerCase()}`, {
      resource: event.resource,
      holder: event.holder,
      fencing_token: event.fencingToken,
      state: event.state,
      waiters: event.waiters,
      ttl_ms: event.ttlMs,
      held_ms: heldSince === undefined ? undefined : event.time - heldSince,
      previous_holder: event.previous?.holder,
      previous_fencing_token: event.previous?.fencingToken,
    });
  }, { renewals: false });
}

/** Routine outcomes of a lock's life: not worth more than debug. */
const ROUTINE = new Set<number>([status.ABORTED, status.NOT_FOUND, status.DEADLINE_EXCEEDED]);
/** The service's own failures. */
const FAILURES = new Set<number>([status.INTERNAL, status.UNKNOWN, status.DATA_LOSS]);

export function logRejectedCalls(logger: Logger): RejectedCallListener {
  return (method, code, codeName, details) => {
    // The caller went away (a watch or a wait it gave up): nothing was refused.
    if (code === status.CANCELLED) return;
    const level: LogLevel = ROUTINE.has(code) ? "debug" : FAILURES.has(code) ? "warn" : "info";
    if (logger.enabled(level)) logger[level]("call rejected", { method, code: codeName, details });
  };
}

/** The rejected-call log alone, for when metrics are off (the metrics interceptor reports them otherwise). */
export function rejectedCallInterceptor(onRejected: RejectedCallListener): ServerInterceptor {
  return (descriptor, call) =>
    new ServerInterceptingCall(call, {
      sendStatus(sent, next) {
        if (sent.code !== status.OK) onRejected(descriptor.path.slice(1), sent.code, status[sent.code] ?? String(sent.code), sent.details ?? "");
        next(sent);
      },
    });
}
