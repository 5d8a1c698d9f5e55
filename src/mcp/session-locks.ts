import type { AcquireOptions, Lock, LockClient } from "../client/index.ts";
import { LeaseLostError } from "../client/index.ts";

// The locks one MCP session holds. The session's LockClient renews them (one
// KeepAlive stream); closing the session releases them all. A lease lost
// while the session lives is reported twice: at once through `onLost` (the
// server sends a logging notification), and in the result of the next tool
// call (takeLosses), because a client may not show notifications to the model.

/** A lock this session held and lost, as tool results report it. */
export interface LostLock {
  resource: string;
  fencing_token: number;
  /** "expired": the service says the lease is gone (expired, released by its id, or its lease file removed or taken over); "unconfirmed": no renewal was confirmed before its expiry (the service was unreachable). */
  reason: string;
  lost_at: string;
  message: string;
}

/** Another call of this session is already waiting for the resource. */
export class AlreadyWaitingError extends Error {
  override name = "AlreadyWaitingError";
  constructor(readonly resource: string) {
    super(`this session is already waiting for "${resource}" (another lock_acquire call); wait for it or cancel it`);
  }
}

export class SessionLocks {
  readonly #client: LockClient;
  readonly #onLost: (lost: LostLock) => void;
  readonly #held = new Map<string, Lock>();
  readonly #waiting = new Set<string>();
  #losses: LostLock[] = [];
  #closing = false;

  constructor(client: LockClient, onLost: (lost: LostLock) => void) {
    this.#client = client;
    this.#onLost = onLost;
  }

  /** The lock this session holds on `resource`, if any. */
  held(resource: string): Lock | undefined {
    const lock = this.#held.get(resource);
    // A lock whose release failed is no longer renewed: past its last
    // confirmed expiry it is gone. (A kept lock is signalled lost before that.)
    if (lock !== undefined && lock.expiresAt.getTime() <= Date.now()) {
      this.#held.delete(resource);
      return undefined;
    }
    return lock;
  }

  /** Whether this session holds `resource` under this fencing token. */
  holds(resource: string, fencingToken: bigint): boolean {
    return this.held(resource)?.fencingToken === fencingToken;
  }

  /** Acquires `resource` for this session; the lease is kept alive until released, lost or the session ends. */
  async acquire(resource: string, options: AcquireOptions): Promise<Lock> {
    if (this.#waiting.has(resource)) throw new AlreadyWaitingError(resource);
    this.#waiting.add(resource);
    let lock: Lock;
    try {
      lock = await this.#client.acquire(resource, options);
    } finally {
      this.#waiting.delete(resource);
    }
    this.#held.set(resource, lock);
    lock.signal.addEventListener(
      "abort",
      () => {
        if (this.#held.get(resource) === lock) this.#held.delete(resource);
        const reason = lock.signal.reason;
        // Closing the session drops its locks on purpose: nobody to tell.
        if (this.#closing || (reason instanceof LeaseLostError && reason.reason === "closed")) return;
        const lost: LostLock = {
          resource,
          fencing_token: Number(lock.fencingToken),
          reason: reason instanceof LeaseLostError ? reason.reason : "unknown",
          lost_at: new Date().toISOString(),
          message: reason instanceof Error ? reason.message : String(reason),
        };
        this.#losses.push(lost);
        this.#onLost(lost);
      },
      { once: true },
    );
    return lock;
  }

  /**
   * Releases this session's lock on `resource`: true if it held one (now
   * released), false if it held none. Rejects (UnavailableError) when a live
   * lease could not be released: it is no longer renewed and expires by its
   * ttl, and stays this session's until then, so that the release can be retried.
   */
  async release(resource: string): Promise<boolean> {
    const lock = this.held(resource);
    if (lock === undefined) return false;
    await lock.release();
    if (this.#held.get(resource) === lock) this.#held.delete(resource);
    return true;
  }

  /** Losses not yet reported in a tool result; each is returned once. */
  takeLosses(): LostLock[] {
    const losses = this.#losses;
    this.#losses = [];
    return losses;
  }

  /** The session is ending: losses from here on are the closing's own. */
  markClosing(): void {
    this.#closing = true;
  }
}
