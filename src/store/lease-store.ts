import type { BlockingState, LeaseGrant, LeaseRecord, ResourceState } from "../core/lease.ts";

/** A time in ms since the epoch, or a clock to read at the moment of the check. */
export type Now = number | (() => number);

export function timeOf(now: Now): number {
  return typeof now === "function" ? now() : now;
}

export type AcquireOutcome = { granted: LeaseRecord } | { blocked: BlockingState };

/** `released` as for release; `granted` is the next holder's lease when the hand-over happened. */
export interface HandOverOutcome {
  released: boolean;
  granted?: LeaseRecord;
}

/**
 * Where leases live. Every method that changes state is a read-check-write
 * that the store makes atomic against every other writer (other processes
 * included). The lock manager serialises calls per resource within a process.
 * `now` comes from the manager's clock so expiry is decided in one place; as
 * a function it is read only once the store holds its guard, so time spent
 * waiting for the guard never makes a lease look live that has expired.
 */
export interface LeaseStore {
  /** Human-readable location, for logs. */
  readonly location: string;
  /** Prepares the store (creates the lock dir). Failure is reported, not fatal. */
  open(): Promise<void>;
  read(resource: string, now: Now): Promise<ResourceState>;
  /** Every resource that is not free, in name order. */
  list(now: Now): Promise<BlockingState[]>;
  /** Grants a new lease with the next fencing token if the resource is free or its lease expired. */
  acquire(resource: string, grant: LeaseGrant, now: Now): Promise<AcquireOutcome>;
  /** Extends a live lease to now + ttl; undefined if it is not the live lease. */
  renew(resource: string, leaseIdHash: string, now: Now): Promise<LeaseRecord | undefined>;
  /** Ends a live lease; false if it is not the live lease (an expired one is reclaimed on the way). */
  release(resource: string, leaseIdHash: string, now: Now): Promise<boolean>;
  /**
   * Ends a live lease and grants `next` in the same atomic step, so nobody
   * else can take the resource in between. Not released: nothing is granted.
   */
  handOver(resource: string, leaseIdHash: string, next: LeaseGrant, now: Now): Promise<HandOverOutcome>;
  /** Removes the lease if it has expired; returns the state afterwards. */
  reclaimIfExpired(resource: string, now: Now): Promise<ResourceState>;
  /**
   * Calls `onChange(resource)` when a resource may have changed outside this
   * process (undefined: anything may have changed). Returns a stop function.
   */
  watch(onChange: (resource: string | undefined) => void): () => void;
  /**
   * Optional, for stores that write a lease's expiry ahead of what its holder
   * is promised (a renewal horizon): true when the lease just renewed should
   * have that written expiry pushed out, which refreshHorizon then does in
   * the background (unawaited, and outside the manager's per-resource turn:
   * it must exclude other writers itself, as the guard does, and leave the
   * promise valid throughout).
   */
  horizonDue?(resource: string, leaseIdHash: string, now: Now): boolean;
  refreshHorizon?(resource: string, leaseIdHash: string, now: Now): Promise<void>;
  /**
   * Throws the store error if the store cannot be written right now (for
   * health checks); must leave nothing behind. Optional, so stores written
   * before it existed still compile: a store without it counts as writable.
   */
  probeWritable?(): Promise<void>;
  /**
   * Removes whatever holds the resource now (a live lease of anyone, an
   * unreadable lease file), under the same exclusion as every other write,
   * keeping the fencing counter at least as high as the removed lease's
   * token. Returns what was removed; undefined when the resource was free.
   * Optional: only stores that support operators' ForceRelease have it.
   */
  forceRemove?(resource: string, now: Now): Promise<BlockingState | undefined>;
}
