import { Metadata, status, type ClientReadableStream } from "@grpc/grpc-js";
import { LockEvent_Type, lockEvent_TypeToJSON, type LockEvent, type LockServiceClient } from "../gen/mcplockd/v1/lock.ts";
import { durationToMs, timestampToDate, toFencingToken } from "./proto-time.ts";
import { errorFromStatus, isServiceError } from "./status-errors.ts";
import type { LockEventInfo, WatchOptions } from "./types.ts";

/**
 * LockService.Watch as an async iterable. Ending the iteration (break,
 * return, the signal) cancels the call. The service ending the stream is an
 * error (UnavailableError on shutdown, WatcherTooSlowError when this reader
 * fell behind): a watch has no natural end.
 */
export async function* watchEvents(stub: LockServiceClient, resourcePrefix: string, options: WatchOptions = {}): AsyncGenerator<LockEventInfo> {
  const { signal } = options;
  if (signal?.aborted) return;
  const call: ClientReadableStream<LockEvent> = stub.watch({ resourcePrefix }, new Metadata());
  const cancel = () => call.cancel();
  signal?.addEventListener("abort", cancel, { once: true });
  try {
    for await (const event of call as AsyncIterable<LockEvent>) yield toEventInfo(event);
    throw errorFromStatus(
      Object.assign(new Error("the service ended the watch"), { code: status.UNAVAILABLE, details: "the service ended the watch", metadata: new Metadata() }),
    );
  } catch (err) {
    if (signal?.aborted && isServiceError(err) && err.code === status.CANCELLED) return;
    throw isServiceError(err) ? errorFromStatus(err) : err;
  } finally {
    signal?.removeEventListener("abort", cancel);
    call.cancel();
  }
}

function toEventInfo(event: LockEvent): LockEventInfo {
  const free = event.acquiredAt === undefined;
  const info: LockEventInfo = {
    type: event.type === LockEvent_Type.UNRECOGNIZED || event.type === LockEvent_Type.TYPE_UNSPECIFIED ? "UNKNOWN" : (lockEvent_TypeToJSON(event.type) as LockEventInfo["type"]),
    resource: event.resource,
    state: event.state,
    holder: event.holder,
    fencingToken: toFencingToken(event.fencingToken),
    acquiredAt: free ? undefined : timestampToDate(event.acquiredAt),
    expiresAt: event.expiresAt === undefined ? undefined : timestampToDate(event.expiresAt),
    ttl: event.ttl === undefined ? undefined : durationToMs(event.ttl),
    waiters: event.waiters,
    time: timestampToDate(event.time),
  };
  if (event.type === LockEvent_Type.HANDED_OVER) {
    info.previousHolder = event.previousHolder;
    info.previousFencingToken = toFencingToken(event.previousFencingToken);
  }
  return info;
}
