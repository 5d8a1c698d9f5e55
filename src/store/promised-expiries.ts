import type { LeaseRecord } from "../core/lease.ts";
import { MAX_TTL_MS } from "../core/limits.ts";

/** The least headroom a horizon gives beyond the promise, whatever the ttl. */
const MIN_HORIZON_HEADROOM_MS = 60_000;

/**
 * How far ahead a lease file's `expires_at` is written (docs/protocol.md,
 * "The renewal horizon"): the ttl plus a headroom of 2 × ttl but at least
 * 60 s, and never beyond the maximum ttl, which is how far past its mtime any
 * reader trusts a file.
 */
export function horizonFor(now: number, ttlMs: number): number {
  return now + Math.min(ttlMs + Math.max(2 * ttlMs, MIN_HORIZON_HEADROOM_MS), MAX_TTL_MS);
}

/**
 * When the horizon of a lease renewed at `now` should be pushed out in the
 * background: once less than half its headroom (and less than a ttl) is
 * left, so the rewrite lands long before a promise could reach the horizon
 * and no renewal has to wait for it.
 */
function refreshDue(now: number, ttlMs: number, horizon: number): boolean {
  const headroom = horizon - (now + ttlMs);
  const fullHeadroom = horizonFor(now, ttlMs) - (now + ttlMs);
  return headroom < Math.min(ttlMs, fullHeadroom / 2);
}

interface PromisedLease {
  /** Identity of the file as our own write left it. */
  identity: string;
  /**
   * Identity of our background rewrite of that file from the moment its
   * rename is issued until it is recorded (rewrote): the file at either
   * identity is ours, but only `onDisk`, the durable one, bounds a promise.
   */
  rewriting?: string;
  /** The lease as the file says, expires_at being the horizon. */
  onDisk: LeaseRecord;
  /** What the holder was told: never later than onDisk.expiresAt. */
  expiresAt: number;
}

/** A lease whose horizon is due for a rewrite: what the rewrite needs. */
export interface DueRefresh {
  identity: string;
  onDisk: LeaseRecord;
}

/**
 * For the lease files this process wrote last: the expiry promised to the
 * holder, which is earlier than the file's horizon. Renewals inside the
 * horizon only move the promise, so they cost a stat instead of a durable
 * write. A promise counts only while the file is exactly as we wrote it
 * (or as our background rewrite in flight renamed it into place); anyone
 * else's change makes the file alone the truth again.
 */
export class PromisedExpiries {
  private readonly byResource = new Map<string, PromisedLease>();

  /** Records our own write of `onDisk` (identity as written) and what the holder was told. */
  wrote(identity: string, onDisk: LeaseRecord, promisedExpiresAt: number): LeaseRecord {
    this.byResource.set(onDisk.resource, { identity, onDisk, expiresAt: promisedExpiresAt });
    return { ...onDisk, expiresAt: promisedExpiresAt };
  }

  /** The lease as its holder knows it: the file's, with our promise if the file is still ours. */
  apply(identity: string, lease: LeaseRecord): LeaseRecord {
    const promise = this.byResource.get(lease.resource);
    if (promise === undefined) return lease;
    if (!isOurs(promise, identity)) {
      this.byResource.delete(lease.resource);
      return lease;
    }
    return { ...lease, expiresAt: Math.min(promise.expiresAt, lease.expiresAt) };
  }

  /**
   * Moves the promise to now + ttl when the file is unchanged (`identity`),
   * the lease is still live and the horizon covers the new promise. Undefined
   * when any of that fails: the caller takes the guarded path instead.
   */
  extend(resource: string, leaseIdHash: string, identity: string, now: number): LeaseRecord | undefined {
    const promise = this.byResource.get(resource);
    if (promise === undefined || !isOurs(promise, identity) || promise.onDisk.leaseIdHash !== leaseIdHash) return undefined;
    // During a rewrite, onDisk is still the version before it: its horizon
    // is durable, the new one not until the rewrite's directory fsync.
    const expiresAt = now + promise.onDisk.ttlMs;
    if (promise.expiresAt <= now || expiresAt > promise.onDisk.expiresAt) return undefined;
    promise.expiresAt = expiresAt;
    return { ...promise.onDisk, expiresAt };
  }

  /** The lease of `leaseIdHash` if its horizon should be pushed out now (see refreshDue). */
  dueForRefresh(resource: string, leaseIdHash: string, now: number): DueRefresh | undefined {
    const promise = this.byResource.get(resource);
    if (promise === undefined || promise.onDisk.leaseIdHash !== leaseIdHash || promise.expiresAt <= now) return undefined;
    if (!refreshDue(now, promise.onDisk.ttlMs, promise.onDisk.expiresAt)) return undefined;
    return { identity: promise.identity, onDisk: promise.onDisk };
  }

  /**
   * Our background rewrite of version `from` is about to be renamed into
   * place as `identity` (a rename keeps the temp file's identity). Until it
   * is recorded (rewrote), the file at `identity` is ours too: a renewal or
   * a read that sees it keeps the promise instead of taking the guarded path
   * (and waiting for the guard the rewrite still holds) or dropping it.
   */
  rewriting(resource: string, from: string, identity: string): void {
    const promise = this.byResource.get(resource);
    if (promise !== undefined && promise.identity === from) promise.rewriting = identity;
  }

  /**
   * Records a rewrite of the file with a later horizon, keeping the promise,
   * if the file was still the version `from` when it was rewritten (and
   * with it what `rewriting` noted).
   */
  rewrote(from: string, identity: string, onDisk: LeaseRecord): void {
    const promise = this.byResource.get(onDisk.resource);
    if (promise === undefined || promise.identity !== from) return;
    promise.rewriting = undefined;
    promise.identity = identity;
    promise.onDisk = onDisk;
  }

  /** A rewrite noted by `rewriting` did not land (see LeaseFileStore.refreshHorizon). */
  rewriteFailed(resource: string, identity: string): void {
    const promise = this.byResource.get(resource);
    if (promise?.rewriting === identity) promise.rewriting = undefined;
  }

  forget(resource: string): void {
    this.byResource.delete(resource);
  }
}

/** The file at `identity` is as our last write, or our rewrite in flight, left it. */
function isOurs(promise: PromisedLease, identity: string): boolean {
  return identity === promise.identity || (promise.rewriting !== undefined && identity === promise.rewriting);
}
