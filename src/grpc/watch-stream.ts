import type { handleServerStreamingCall } from "@grpc/grpc-js";
import { WatcherTooSlowError } from "../core/errors.ts";
import { snapshotComplete, validatePrefix, type LockEvent, type LockEventType } from "../core/lock-events.ts";
import type { LockManager } from "../core/lock-manager.ts";
import { LockEvent_Type, type LockEvent as ProtoLockEvent, type WatchRequest } from "../gen/mcplockd/v1/lock.ts";
import type { CallGate } from "./call-adapter.ts";
import { msToDuration, msToTimestamp } from "./convert.ts";
import { toServiceError } from "./status-map.ts";

/**
 * Events one watcher may have queued beyond what gRPC buffers. A watcher this
 * far behind is cut off (RESOURCE_EXHAUSTED) rather than slowing the service
 * or growing its memory; it re-opens and gets a fresh snapshot.
 */
export const WATCH_QUEUE_LIMIT = 4_096;

const TYPE_ON_WIRE: Record<LockEventType, LockEvent_Type> = {
  HELD: LockEvent_Type.HELD,
  SNAPSHOT_COMPLETE: LockEvent_Type.SNAPSHOT_COMPLETE,
  ACQUIRED: LockEvent_Type.ACQUIRED,
  RELEASED: LockEvent_Type.RELEASED,
  EXPIRED: LockEvent_Type.EXPIRED,
  HANDED_OVER: LockEvent_Type.HANDED_OVER,
  FORCE_RELEASED: LockEvent_Type.FORCE_RELEASED,
  WAITERS_CHANGED: LockEvent_Type.WAITERS_CHANGED,
  RENEWED: LockEvent_Type.RENEWED,
};

export function toProtoEvent(event: LockEvent): ProtoLockEvent {
  return {
    type: TYPE_ON_WIRE[event.type],
    resource: event.resource,
    holder: event.holder,
    fencingToken: event.fencingToken,
    acquiredAt: event.acquiredAt === undefined ? undefined : msToTimestamp(event.acquiredAt),
    expiresAt: event.expiresAt === undefined ? undefined : msToTimestamp(event.expiresAt),
    ttl: event.ttlMs === undefined ? undefined : msToDuration(event.ttlMs),
    waiters: event.waiters,
    time: msToTimestamp(event.time),
    state: event.state,
    previousHolder: event.previous?.holder ?? "",
    previousFencingToken: event.previous?.fencingToken ?? 0,
  };
}

export interface WatchOptions {
  shutdown: AbortSignal;
  gate?: CallGate;
  /** Default WATCH_QUEUE_LIMIT. */
  queueLimit?: number;
}

/**
 * LockService.Watch: the snapshot, SNAPSHOT_COMPLETE, then the manager's
 * events for the prefix as they happen. Taking the snapshot and subscribing
 * in one turn means no event falls between them.
 */
export function watchHandler(manager: LockManager, options: WatchOptions): handleServerStreamingCall<WatchRequest, ProtoLockEvent> {
  const queueLimit = options.queueLimit ?? WATCH_QUEUE_LIMIT;
  return (call) => {
    const refused = options.gate?.refusal();
    if (refused) return void call.emit("error", toServiceError(refused));
    let prefix: string;
    try {
      prefix = validatePrefix(call.request.resourcePrefix);
    } catch (err) {
      return void call.emit("error", toServiceError(err));
    }

    const queue: ProtoLockEvent[] = manager.snapshot(prefix).map(toProtoEvent);
    queue.push(toProtoEvent(snapshotComplete(Date.now())));
    let draining = false;
    let done = false;

    const flush = () => {
      while (!draining && !done && queue.length > 0) {
        if (call.cancelled || call.destroyed) return finish();
        if (!call.write(queue.shift()!)) {
          draining = true;
          call.once("drain", () => {
            draining = false;
            flush();
          });
        }
      }
    };
    const onEvent = (event: LockEvent) => {
      if (done || !event.resource.startsWith(prefix)) return;
      if (queue.length >= queueLimit) return finish(new WatcherTooSlowError(queueLimit));
      queue.push(toProtoEvent(event));
      flush();
    };
    const onShutdown = () => finish(options.shutdown.reason as Error);
    const unsubscribe = manager.subscribe(onEvent);
    /** Ends the stream once: with `err`'s status, or quietly when the caller went away. */
    function finish(err?: Error): void {
      if (done) return;
      done = true;
      queue.length = 0;
      unsubscribe();
      options.shutdown.removeEventListener("abort", onShutdown);
      if (err !== undefined && !call.cancelled && !call.destroyed) call.emit("error", toServiceError(err));
    }
    call.on("cancelled", () => finish());
    call.on("error", () => finish());
    if (options.shutdown.aborted) return onShutdown();
    options.shutdown.addEventListener("abort", onShutdown, { once: true });
    flush();
  };
}
