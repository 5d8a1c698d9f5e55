import { InvalidArgumentError } from "../core/errors.ts";
import type { BlockingState, LeaseRecord } from "../core/lease.ts";
import type { Duration } from "../gen/google/protobuf/duration.ts";
import type { Timestamp } from "../gen/google/protobuf/timestamp.ts";
import { ListLocksResponse, type Lease } from "../gen/mcplockd/v1/lock.ts";
import { msToDuration } from "./wire-time.ts";

// Conversions between protobuf well-known types and the core's milliseconds.

/** Range checks belong to the core's validators, which name the allowed range. */
export function durationToMs(duration: Duration | undefined, field: string): number | undefined {
  if (duration === undefined) return undefined;
  const { seconds, nanos } = duration;
  if (Math.abs(nanos) >= 1e9) throw new InvalidArgumentError(field, `nanos is ${nanos}; allowed is -999999999 to 999999999`);
  return seconds * 1000 + nanos / 1e6;
}

export { msToDuration };

export function msToTimestamp(ms: number): Timestamp {
  return msToDuration(ms);
}

/** The wire form of a lease; lease_id only when the caller is its acquirer. */
export function toProtoLease(lease: LeaseRecord, leaseId = "", waiters = 0): Lease {
  return {
    leaseId,
    resource: lease.resource,
    holder: lease.holder,
    fencingToken: lease.fencingToken,
    acquiredAt: msToTimestamp(lease.acquiredAt),
    expiresAt: msToTimestamp(lease.expiresAt),
    ttl: msToDuration(lease.ttlMs),
    metadata: lease.metadata,
    waiters,
    state: "held",
  };
}

/** A listing entry for any blocking state, unreadable lease files included. */
export function toListedLease(state: BlockingState, waiters: number): Lease {
  if (state.kind === "held") return toProtoLease(state.lease, "", waiters);
  return {
    leaseId: "",
    resource: state.resource,
    holder: "unknown",
    fencingToken: 0,
    acquiredAt: msToTimestamp(state.modifiedAt),
    expiresAt: msToTimestamp(state.blockedUntil),
    ttl: msToDuration(state.blockedUntil - state.modifiedAt),
    metadata: { unreadable_reason: state.reason },
    waiters,
    state: "unreadable",
  };
}

/**
 * One listing entry as the bytes it adds to a ListLocksResponse (its
 * repeated field's tag, length and Lease): the response is the concatenation
 * of its entries' bytes.
 */
export function encodeListedLease(state: BlockingState, waiters: number): Uint8Array {
  return ListLocksResponse.encode({ locks: [toListedLease(state, waiters)] }).finish();
}
