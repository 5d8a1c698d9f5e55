import { status } from "@grpc/grpc-js";
import { LockClientError, type LockEventInfo, type LockInfo } from "../client/index.ts";
import { systemClock, type Clock, type TimerHandle } from "../core/clock.ts";

// Where `locks://status` subscribers learn that the set of locks changed:
// from the service's Watch stream (WatchLockChangeSource), or, against a
// service without Watch, by listing at most once a second
// (PollingLockChangeSource). The MCP server sees only this interface.

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

/** How long a broken watch waits before it is opened again. */
const REWATCH_DELAY_MS = 1_000;

/**
 * Follows the service's Watch stream while someone is subscribed: every event
 * after the snapshot but a renewal is a change. A stream that ends or fails is
 * opened again a second later, and its new snapshot counts as a change (what
 * happened in between was not seen). A service that has no Watch
 * (UNIMPLEMENTED: an older one) is followed by `fallback` instead.
 */
export class WatchLockChangeSource implements LockChangeSource {
  readonly #watch: (signal: AbortSignal) => AsyncIterable<LockEventInfo>;
  readonly #fallback: LockChangeSource;
  readonly #clock: Clock;
  readonly #listeners = new Set<() => void>();
  /** Listeners whose subscribe() waits for the snapshot. */
  readonly #pending = new Set<() => void>();
  /** Subscribed listeners moved to the fallback, with their unsubscribe there. */
  readonly #moved = new Map<() => void, Promise<() => void>>();
  #stream: AbortController | undefined;
  /** The wait before a broken stream is opened again. */
  #rewatch: TimerHandle | undefined;
  /** Resolves once the running stream's snapshot is complete (or it failed). */
  #ready: Promise<void> = Promise.resolve();
  #useFallback = false;
  #closed = false;

  constructor(
    watch: (signal: AbortSignal) => AsyncIterable<LockEventInfo>,
    fallback: LockChangeSource,
    options: { clock?: Clock } = {},
  ) {
    this.#watch = watch;
    this.#fallback = fallback;
    this.#clock = options.clock ?? systemClock;
  }

  async subscribe(onChange: () => void): Promise<() => void> {
    if (this.#closed) return () => {};
    if (this.#useFallback) return this.#fallback.subscribe(onChange);
    const listener = () => onChange();
    this.#listeners.add(listener);
    this.#pending.add(listener);
    if (this.#stream === undefined && this.#rewatch === undefined) this.#start(false);
    await this.#ready;
    this.#pending.delete(listener);
    if (this.#useFallback) {
      this.#listeners.delete(listener);
      return this.#fallback.subscribe(onChange);
    }
    return () => {
      this.#listeners.delete(listener);
      // Moved to the fallback meanwhile: leave it there too.
      void this.#moved.get(listener)?.then((off) => off());
      this.#moved.delete(listener);
      if (this.#listeners.size === 0) this.#stop();
    };
  }

  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    this.#stop();
    this.#fallback.close();
  }

  #stop(): void {
    this.#stream?.abort();
    this.#stream = undefined;
    this.#rewatch?.cancel();
    this.#rewatch = undefined;
  }

  #start(reopened: boolean): void {
    const stream = new AbortController();
    this.#stream = stream;
    let markReady!: () => void;
    this.#ready = new Promise<void>((resolve) => (markReady = resolve));
    void this.#follow(stream, reopened, markReady).finally(() => {
      markReady();
      if (this.#stream !== stream) return; // stopped: nobody is subscribed
      this.#stream = undefined;
      if (this.#closed || this.#listeners.size === 0 || this.#useFallback) return;
      this.#rewatch = this.#clock.setTimer(REWATCH_DELAY_MS, () => {
        this.#rewatch = undefined;
        if (this.#stream === undefined && this.#listeners.size > 0 && !this.#closed) this.#start(true);
      });
    });
  }

  async #follow(stream: AbortController, reopened: boolean, markReady: () => void): Promise<void> {
    let snapshotDone = false;
    try {
      for await (const event of this.#watch(stream.signal)) {
        if (event.type === "SNAPSHOT_COMPLETE") {
          snapshotDone = true;
          markReady();
          if (reopened) this.#notify();
          continue;
        }
        if (snapshotDone && event.type !== "RENEWED") this.#notify();
      }
    } catch (err) {
      if (err instanceof LockClientError && err.code === status.UNIMPLEMENTED) {
        // Subscribed listeners move to the fallback; pending ones go there themselves.
        this.#useFallback = true;
        for (const listener of this.#listeners) {
          if (!this.#pending.has(listener)) this.#moved.set(listener, this.#fallback.subscribe(listener));
        }
      }
      // Anything else: opened again a second later (see #start).
    }
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}

/** What identifies the set of locks, without the expiries that renewals move. */
export function lockSetFingerprint(locks: LockInfo[]): string {
  return JSON.stringify(
    locks.map((lock) => [lock.resource, lock.holder, String(lock.fencingToken), lock.waiters, lock.state]),
  );
}
