import { inspect } from "node:util";
import type { LeaseLostError } from "./errors.ts";
import type { KeptLease } from "./lease-keeper.ts";

/** What a Lock needs from its client; see LockClient. */
export interface LockOwner {
  /** Stops renewing the lease (no effect if it is not kept). */
  stopKeeping(leaseId: string): void;
  /** Release; resolves false when the service no longer knows the lease. */
  releaseLease(leaseId: string): Promise<boolean>;
}

export interface LockInit {
  resource: string;
  holder: string;
  fencingToken: bigint;
  leaseId: string;
  expiresAt: Date;
  ttl: number;
}

/**
 * A held lease, kept alive by its LockClient until release() or loss.
 * Created by LockClient.acquire(); not meant to be constructed directly.
 *
 * The lease id is a capability (whoever has it can release the lock): it is
 * a getter over a private field, so it is not enumerable and appears neither
 * in JSON.stringify(lock) nor in console.log(lock).
 */
export class Lock implements AsyncDisposable {
  readonly resource: string;
  readonly holder: string;
  /** Strictly increasing per resource: pass it to downstream systems so they can reject writes from a former holder. */
  readonly fencingToken: bigint;
  /** Fires when the lease is lost (reason: a LeaseLostError); then stop using the resource. Not fired by release(). */
  readonly signal: AbortSignal;
  readonly #leaseId: string;
  readonly #owner: LockOwner;
  readonly #controller = new AbortController();
  #expiresAt: Date;
  #ttl: number;
  #released: Promise<void> | undefined;
  #detached = false;

  /** @internal `keep` receives the keeper's view of this lock (confirmations and loss). */
  constructor(init: LockInit, owner: LockOwner, keep: (kept: KeptLease) => void) {
    this.resource = init.resource;
    this.holder = init.holder;
    this.fencingToken = init.fencingToken;
    this.#leaseId = init.leaseId;
    this.#expiresAt = init.expiresAt;
    this.#ttl = init.ttl;
    this.#owner = owner;
    this.signal = this.#controller.signal;
    keep({
      resource: this.resource,
      confirmed: (expiresAt, ttl) => {
        this.#expiresAt = expiresAt;
        this.#ttl = ttl;
      },
      lost: (error: LeaseLostError) => this.#controller.abort(error),
    });
  }

  /** The capability for Release and KeepAlive (for handing to a script that releases it). */
  get leaseId(): string {
    return this.#leaseId;
  }

  /** The last confirmed expiry, on this machine's clock (counted from when the renewal was sent). */
  get expiresAt(): Date {
    return this.#expiresAt;
  }

  /** The lease's time to live in ms, as the service last stated it. */
  get ttl(): number {
    return this.#ttl;
  }

  /**
   * Stops renewing and releases the lease. Idempotent: later calls return
   * the first call's promise (or retry, if it failed). Resolves without
   * throwing when the lease was already lost or gone; rejects (for instance
   * UnavailableError) only when a live lease could not be released, which
   * then expires at `expiresAt`.
   */
  release(): Promise<void> {
    this.#released ??= this.#release().catch((err: unknown) => {
      this.#released = undefined;
      throw err;
    });
    return this.#released;
  }

  /**
   * Stops renewing the lease WITHOUT releasing it, for handing it to another
   * process (as `mcp-lockd acquire` does): the lease then lives until its
   * expiry unless renewed or released by id, and `signal` no longer fires.
   * Disposal (`await using`) and client.close() leave a detached lease alone;
   * an explicit release() still releases it.
   */
  detach(): void {
    this.#detached = true;
    this.#owner.stopKeeping(this.#leaseId);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#detached) await this.release();
  }

  toJSON(): Record<string, unknown> {
    return {
      resource: this.resource,
      holder: this.holder,
      fencingToken: this.fencingToken.toString(),
      expiresAt: this.#expiresAt.toISOString(),
      ttl: this.#ttl,
      lost: this.signal.aborted,
    };
  }

  [inspect.custom](depth: number, options: object): string {
    const shown = { ...this.toJSON(), fencingToken: this.fencingToken, expiresAt: this.#expiresAt };
    return `Lock ${inspect(shown, { ...options, depth })}`;
  }

  async #release(): Promise<void> {
    this.#owner.stopKeeping(this.#leaseId);
    if (this.signal.aborted) {
      // Lost: the service may still hold it (it was unreachable); tidy up if it can.
      await this.#owner.releaseLease(this.#leaseId).catch(() => false);
      return;
    }
    await this.#owner.releaseLease(this.#leaseId);
  }
}
