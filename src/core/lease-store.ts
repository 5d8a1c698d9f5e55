import type { BlockingState, LeaseGrant, LeaseRecord, ResourceState } from "./lease.ts";

export type AcquireOutcome =
  | { granted: LeaseRecord }
  | { blocked: BlockingState }
  /** Free, but callers of other processes come first in the store's shared queue. */
  | { queued: true };

/**
 * How a caller asks, for a store that keeps the FIFO queue itself
 * (`sharedQueue`): "try" is granted only if the resource is free and nobody
 * is queued, and leaves nothing behind; "wait" is granted if it is first (or
 * the resource is free and nobody is queued), and otherwise joins the queue,
 * atomically with the attempt, and stays there until granted or
 * `leaveQueue`. A store whose queue is the manager's ignores it.
 */
export type QueuePosition = "try" | "wait";

/** `released` as for release; `granted` is the next holder's lease when the hand-over happened. */
export interface HandOverOutcome {
  released: boolean;
  granted?: LeaseRecord;
}

/**
 * The port the lock manager owns and every store implements: where leases
 * live. Every method that changes state is a read-check-write that the store
 * makes atomic against every other writer (other processes and replicas
 * included). The manager serialises its own calls per resource.
 *
 * A store reads time from the Clock it was made with (the manager's), and
 * only once it holds whatever excludes other writers, so time spent waiting
 * never makes a lease look live that has expired. Work a store does on its
 * own (pushing out what it wrote ahead, sweeping left-overs, watching) is its
 * business, and ends with close().
 */
export interface LeaseStore {
  /** Human-readable location, for logs. */
  readonly location: string;
  /** Prepares the store (creates the lock dir). Failure is reported, not fatal. */
  open(): Promise<void>;
  /** Stops the store's own background work; leases stay where they are. */
  close(): Promise<void>;
  read(resource: string): Promise<ResourceState>;
  /** Every resource that is not free, in name order. */
  list(): Promise<BlockingState[]>;
  /**
   * Whether other processes queue for the same resources through this store
   * (replicas sharing etcd). Then the store keeps the FIFO queue, its waiter
   * counts and the lease-id lookup for every replica; otherwise the manager
   * keeps them (one host: every caller reaches the same process).
   */
  readonly sharedQueue: boolean;
  /** Grants a new lease with the next fencing token if the resource is free or its lease expired (and, with a shared queue, `position` allows). */
  acquire(resource: string, grant: LeaseGrant, position: QueuePosition): Promise<AcquireOutcome>;
  /** Shared queue: the waiter gave up; removes its place. Otherwise nothing to do. */
  leaveQueue(resource: string, leaseIdHash: string): Promise<void>;
  /** Shared queue: callers queued for `resource` in every process; otherwise 0 (the manager counts its own). */
  queuedCount(resource: string): number;
  /** Shared queue: the resource the lease with this id hash holds, if another process granted it; otherwise undefined. */
  findLease(leaseIdHash: string): Promise<string | undefined>;
  /** Extends a live lease to now + ttl; undefined if it is not the live lease. */
  renew(resource: string, leaseIdHash: string): Promise<LeaseRecord | undefined>;
  /** Ends a live lease; false if it is not the live lease (an expired one is reclaimed on the way). */
  release(resource: string, leaseIdHash: string): Promise<boolean>;
  /**
   * Ends a live lease and grants `next` in the same atomic step, so nobody
   * else can take the resource in between. Not released: nothing is granted.
   */
  handOver(resource: string, leaseIdHash: string, next: LeaseGrant): Promise<HandOverOutcome>;
  /** Removes the lease if it has expired; returns the state afterwards. */
  reclaimIfExpired(resource: string): Promise<ResourceState>;
  /**
   * Calls `onChange(resource)` when a resource may have changed outside this
   * process (undefined: anything may have changed). Returns a stop function.
   */
  watch(onChange: (resource: string | undefined) => void): () => void;
  /** Throws the store error if the store cannot be written right now (for health checks); leaves nothing behind. */
  probeWritable(): Promise<void>;
  /**
   * Removes whatever holds the resource now (a live lease of anyone, an
   * unreadable lease file), under the same exclusion as every other write,
   * keeping the fencing counter at least as high as the removed lease's
   * token. Returns what was removed; undefined when the resource was free.
   * For operators' ForceRelease.
   */
  forceRemove(resource: string): Promise<BlockingState | undefined>;
}
