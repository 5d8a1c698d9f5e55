import type { LockInfo } from "../client/index.ts";
import { systemClock, type Clock, type TimerHandle } from "../core/clock.ts";

// Where `locks://status` subscribers learn that the set of locks changed.
// Today a PollingLockChangeSource lists the locks; once the service has a
// Watch RPC, a source that reads its stream replaces it behind this
// interface, and the MCP server does not change.

/** Tells listeners that the set of locks (holders, tokens, waiters) changed. */
export interface LockChangeSource {
  /**
   * Calls `onChange` after each change until the returned function is called.
   * Resolves once every change from now on will be reported (a subscriber
   * that then changes a lock must hear about it).
   */
  subscribe(onChange: () => void): Promise<() => void>;
  /** Stops for good; listeners are dropped. */
  close(): void;
}

/** The floor on the polling interval: the issue allows no faster loop. */
export const MIN_POLL_INTERVAL_MS = 1_000;

/**
 * Lists the locks every `intervalMs` (at least a second), only while someone
 * is subscribed, and reports a change when a lock appears or goes, changes
 * holder or fencing token, or its waiters or state change. Renewals (a later
 * expiry) are not changes. A failed listing is skipped: it says nothing about
 * the locks.
 */
export class PollingLockChangeSource implements LockChangeSource {
  readonly #list: () => Promise<LockInfo[]>;
  readonly #intervalMs: number;
  readonly #listeners = new Set<() => void>();
  readonly #clock: Clock;
  #timer: TimerHandle | undefined;
  #last: string | undefined;
  /** The poll in flight, if any. */
  #polling: Promise<void> | undefined;
  /** The latest poll, which a later subscriber's baseline waits for. */
  #baseline: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(list: () => Promise<LockInfo[]>, options: { intervalMs?: number; clock?: Clock } = {}) {
    this.#list = list;
    this.#clock = options.clock ?? systemClock;
    this.#intervalMs = Math.max(MIN_POLL_INTERVAL_MS, options.intervalMs ?? MIN_POLL_INTERVAL_MS);
  }

  async subscribe(onChange: () => void): Promise<() => void> {
    if (this.#closed) return () => {};
    const listener = () => onChange();
    this.#listeners.add(listener);
    const unsubscribe = () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.#stop();
    };
    if (this.#listeners.size === 1) {
      // The first subscriber: the current set is the baseline, taken now.
      this.#last = undefined;
      this.#stop();
      await this.#poll();
    } else {
      await this.#baseline;
    }
    return unsubscribe;
  }

  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    this.#stop();
  }

  #stop(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #poll(): Promise<void> {
    // A poll in flight answers for a caller who asks meanwhile.
    this.#baseline = this.#polling ?? this.#pollOnce();
    return this.#baseline;
  }

  async #pollOnce(): Promise<void> {
    let settled!: () => void;
    this.#polling = new Promise<void>((resolve) => (settled = resolve));
    this.#timer = undefined;
    try {
      const fingerprint = lockSetFingerprint(await this.#list());
      if (this.#listeners.size > 0) {
        const changed = this.#last !== undefined && fingerprint !== this.#last;
        this.#last = fingerprint;
        if (changed) for (const listener of [...this.#listeners]) listener();
      }
    } catch {
      // The service is unreachable or busy: try again at the next tick.
    } finally {
      this.#polling = undefined;
      settled();
      if (this.#listeners.size > 0 && !this.#closed && this.#timer === undefined) {
        this.#timer = this.#clock.setTimer(this.#intervalMs, () => void this.#poll());
      }
    }
  }
}

/** What identifies the set of locks, without the expiries that renewals move. */
export function lockSetFingerprint(locks: LockInfo[]): string {
  return JSON.stringify(
    locks.map((lock) => [lock.resource, lock.holder, String(lock.fencingToken), lock.waiters, lock.state]),
  );
}
