import type { Duration } from "../gen/google/protobuf/duration.ts";
import type { Timestamp } from "../gen/google/protobuf/timestamp.ts";

// Protobuf well-known types to and from the client's milliseconds and Dates.

export { msToDuration } from "../grpc/wire-time.ts";

export function durationToMs(duration: Duration | undefined): number {
  return duration === undefined ? 0 : duration.seconds * 1000 + duration.nanos / 1e6;
}

export function timestampToDate(timestamp: Timestamp | undefined): Date {
  return new Date(timestamp === undefined ? 0 : timestamp.seconds * 1000 + Math.floor(timestamp.nanos / 1e6));
}

/**
 * uint64 fencing tokens as bigint. The generated decoder yields a number and
 * refuses values above Number.MAX_SAFE_INTEGER, so a number that arrives is exact.
 */
export function toFencingToken(value: number): bigint {
  return BigInt(value);
}
