import type { LeaseRecord } from "../core/lease.ts";
import { MAX_TTL_MS } from "../core/limits.ts";
import { sameFileAndSize } from "./file-system.ts";

/**
 * How far beyond the promise a lease file's `expires_at` is written: renewals
 * within this of the last write need no write of their own (the file already
 * covers them), and after a crash of the service nobody waits longer than
 * this past what the holder was promised (docs/protocol.md, "The renewal
 * horizon").
 */
export const HORIZON_HEADROOM_MS = 1_000;

/**
 * The `expires_at` the service writes for a lease renewed at `now`: the
 * promise plus the headroom, never beyond the maximum ttl, which is how far
 * past its mtime any reader trusts a file.
 */
export function horizonFor(now: number, ttlMs: number): number {
  return now + Math.min(ttlMs + HORIZON_HEADROOM_MS, MAX_TTL_MS);
}

/**
 * When the horizon of a lease renewed at `now` should be pushed out in the
 * background: once less than a quarter of its headroom is left, so a lease
 * renewed many times a second is rewritten a little more than once a second,
 * off the renewals' path, and a renewal rarely finds the horizon passed and
 * waits for the write itself. (At half the headroom, the 1,000 leases of the
 * bench's maximum-rate row were rewritten twice a second each.)
 */
function refreshDue(now: number, ttlMs: number, horizon: number): boolean {
  const headroom = horizon - (now + ttlMs);
  const fullHeadroom = horizonFor(now, ttlMs) - (now + ttlMs);
  return headroom < fullHeadroom / 4;
}

interface PromisedLease {
  /** Identity of the file as our own write left it. */
  identity: string;
  /**
   * Our in-place rewrite of that file is in flight, from the moment its
   * write is issued until it is recorded (rewrote): the file at its inode and
   * size is ours whatever its mtime, but only `onDisk`, the durable version,
   * bounds a promise.
   */
  rewriting?: boolean;
  /** The lease as the file says, expires_at being the horizon. */
  onDisk: LeaseRecord;
  /** What the holder was told: never later than onDisk.expiresAt. */
  expiresAt: number;
}

/** Our own live lease file, as a rewrite of it needs it. */
export interface OwnLeaseFile {
  identity: string;
  onDisk: LeaseRecord;
}

/**
 * For the lease files this process wrote last: the expiry promised to the
 * holder, which is earlier than the file's horizon. Renewals inside the
 * horizon only move the promise, so they cost a stat instead of a durable
 * write. A promise counts only while the file is exactly as we wrote it
 * (or as our rewrite in flight left it); anyone
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

  /**
   * Whether the horizon of our last write of `leaseIdHash`'s file covers a
   * renewal now: if not, the renewal must write, and need not stat the file
   * first.
   */
  covers(resource: string, leaseIdHash: string, now: number): boolean {
    const promise = this.byResource.get(resource);
    return promise !== undefined && promise.onDisk.leaseIdHash === leaseIdHash && now + promise.onDisk.ttlMs <= promise.onDisk.expiresAt;
  }

  /** The file of `leaseIdHash` as we last wrote it, while its promise is live. */
  own(resource: string, leaseIdHash: string, now: number): OwnLeaseFile | undefined {
    const promise = this.byResource.get(resource);
    if (promise === undefined || promise.onDisk.leaseIdHash !== leaseIdHash || promise.expiresAt <= now) return undefined;
    return { identity: promise.identity, onDisk: promise.onDisk };
  }

  /** The lease of `leaseIdHash` if its horizon should be pushed out now (see refreshDue). */
  dueForRefresh(resource: string, leaseIdHash: string, now: number): OwnLeaseFile | undefined {
    const own = this.own(resource, leaseIdHash, now);
    return own !== undefined && refreshDue(now, own.onDisk.ttlMs, own.onDisk.expiresAt) ? own : undefined;
  }

  /**
   * Our in-place rewrite of version `from` is about to be written. Until it is
   * recorded (rewrote), the file at that inode and size is ours whatever its
   * mtime: a renewal or a read that sees it keeps the promise instead of
   * taking the guarded path or dropping it.
   */
  rewriting(resource: string, from: string): void {
    const promise = this.byResource.get(resource);
    if (promise !== undefined && promise.identity === from) promise.rewriting = true;
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

  /**
   * A rewrite noted by `rewriting` did not land as ours (see
   * LeaseFileStore.rewriteInPlace): only the version before it is ours.
   */
  rewriteFailed(resource: string): void {
    const promise = this.byResource.get(resource);
    if (promise !== undefined) promise.rewriting = undefined;
  }

  forget(resource: string): void {
    this.byResource.delete(resource);
  }
}

/** The file at `identity` is as our last write left it, or as our rewrite in flight is leaving it. */
function isOurs(promise: PromisedLease, identity: string): boolean {
  return identity === promise.identity || (promise.rewriting === true && sameFileAndSize(identity, promise.identity));
}
