import type { LeaseRecord } from "../core/lease.ts";
import { MAX_TTL_MS } from "../core/limits.ts";

/**
 * How far ahead of the holder's expiry a lease file's `expires_at` is written
 * (docs/protocol.md, "The renewal horizon"): ttl + 2 × ttl, and never beyond
 * the maximum ttl, which is how far past its mtime any reader trusts a file.
 */
export function horizonFor(now: number, ttlMs: number): number {
  return now + Math.min(3 * ttlMs, Math.max(ttlMs, MAX_TTL_MS));
}

interface PromisedLease {
  /** Identity of the file as our own write left it. */
  identity: string;
  /** The lease as the file says, expires_at being the horizon. */
  onDisk: LeaseRecord;
  /** What the holder was told: never later than onDisk.expiresAt. */
  expiresAt: number;
}

/**
 * For the lease files this process wrote last: the expiry promised to the
 * holder, which is earlier than the file's horizon. Renewals inside the
 * horizon only move the promise, so they cost a stat instead of a durable
 * write. A promise counts only while the file is exactly as we wrote it;
 * anyone else's change makes the file alone the truth again.
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
    if (promise.identity !== identity) {
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
    if (promise === undefined || promise.identity !== identity || promise.onDisk.leaseIdHash !== leaseIdHash) return undefined;
    const expiresAt = now + promise.onDisk.ttlMs;
    if (promise.expiresAt <= now || expiresAt > promise.onDisk.expiresAt) return undefined;
    promise.expiresAt = expiresAt;
    return { ...promise.onDisk, expiresAt };
  }

  /** True when we hold a promise for `resource` whose file identity is `identity`. */
  covers(resource: string, identity: string): boolean {
    return this.byResource.get(resource)?.identity === identity;
  }

  forget(resource: string): void {
    this.byResource.delete(resource);
  }
}
