import { systemClock, type Clock, type TimerHandle } from "./clock.ts";
import {
  LeaseNotFoundError,
  ResourceBusyError,
  ShuttingDownError,
  WaitCancelledError,
  WaitDeadlineError,
} from "./errors.ts";
import { blockedUntil, holderOf, type BlockingState, type LeaseGrant, type LeaseRecord, type ResourceState } from "./lease.ts";
import { hashLeaseId, newLeaseId } from "./lease-id.ts";
import { KeyedMutex } from "./keyed-mutex.ts";
import { describeState, transitionEvents, type LockEvent, type LockEventListener } from "./lock-events.ts";
import {
  MAX_LEASE_ID_LENGTH,
  validateHolder,
  validateMetadata,
  validateResource,
  validateTtl,
  validateWait,
} from "./limits.ts";
import { WaitQueue } from "./wait-queue.ts";
import { Waiter } from "./waiter.ts";
import type { LeaseStore } from "../store/lease-store.ts";

/**
 * Background horizon rewrites in flight at once (see startRefreshes): enough
 * to keep the thread pool busy and let concurrent rewrites share directory
 * fsyncs, few enough that grants and releases are not starved of the disk.
 */
const MAX_BACKGROUND_REFRESHES = 16;

export interface AcquireInput {
  resource: string;
  holder?: string;
  ttlMs?: number;
  /** 0 or undefined: try once. */
  waitMs?: number;
  metadata?: Record<string, string>;
}

export interface GrantedLease {
  /** The capability; returned only here. */
  leaseId: string;
  lease: LeaseRecord;
}

export interface ListedLock {
  state: BlockingState;
  waiters: number;
}

export interface LockManagerOptions {
  store: LeaseStore;
  clock?: Clock;
  log?: (message: string) => void;
  /** How often resources with waiters are re-read in case a watch event was lost. */
  safetyRescanMs?: number;
}

/**
 * The lock manager: leases, FIFO wait queues, expiry and fencing over a
 * LeaseStore. The store is the source of truth; what is kept here (queues,
 * expiry timers, the lease-id index) is derived from it and rebuilt on start.
 */
export class LockManager {
  private readonly store: LeaseStore;
  private readonly clock: Clock;
  private readonly log: (message: string) => void;
  private readonly mutex = new KeyedMutex();
  private readonly queues = new Map<string, WaitQueue<Waiter>>();
  private readonly expiryTimers = new Map<string, TimerHandle>();
  /** What each resource was last seen blocked by, for busy messages. */
  private readonly blockers = new Map<string, BlockingState>();
  /** sha256(lease id) → resource, for leases granted with an id. */
  private readonly resourceByHash = new Map<string, string>();
  private readonly pumping = new Set<string>();
  /** Resources whose horizon should be pushed out (→ lease id hash), in request order. */
  private readonly refreshing = new Map<string, string>();
  /** Those of them being rewritten now. */
  private readonly refreshStarted = new Set<string>();
  private readonly pumpAgain = new Set<string>();
  private readonly safetyRescanMs: number;
  /** Whether every lease file has been read once, so `blockers` lists them all. */
  private loaded = false;
  private stopWatching: (() => void) | undefined;
  private rescanTimer: TimerHandle | undefined;
  private closed = false;
  /** The clock as the store reads it: after taking its guard (see LeaseStore). */
  private readonly now = () => this.clock.now();
  private readonly eventListeners = new Set<LockEventListener>();
  /** Listeners that want RENEWED events (one per renewal: the hot path of KeepAlive). */
  private renewalListeners = 0;
  /** The waiter count last announced per resource (absent: 0). */
  private readonly announcedWaiters = new Map<string, number>();

  constructor(options: LockManagerOptions) {
    this.store = options.store;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? (() => {});
    this.safetyRescanMs = options.safetyRescanMs ?? 2_000;
  }

  /** Loads every lease from the store: live ones stay held, expired ones are reclaimed. */
  async start(): Promise<void> {
    try {
      await this.store.open();
      const states = await this.store.list(this.clock.now());
      for (const state of states) this.observe(state);
      this.loaded = true;
      this.log(`loaded ${states.length} lease file(s) from ${this.store.location}`);
    } catch (err) {
      // Keep serving: each request reports the store error until it is fixed.
      this.log(`lock dir not usable yet: ${(err as Error).message}`);
    }
    // Watch after open() made the dir; the store keeps retrying if it cannot.
    this.stopWatching = this.store.watch((resource) => this.onExternalChange(resource));
    this.scheduleSafetyRescan();
  }

  async acquire(input: AcquireInput, signal?: AbortSignal): Promise<GrantedLease> {
    const resource = validateResource(input.resource);
    const holder = validateHolder(input.holder ?? "");
    const ttlMs = validateTtl(input.ttlMs);
    const waitMs = validateWait(input.waitMs);
    const metadata = validateMetadata(input.metadata ?? {});
    if (this.closed) throw new ShuttingDownError();
    if (signal?.aborted) throw abortError(signal, resource);

    const queue = this.queueOf(resource);
    const tryOnce = waitMs === 0;
    // FIFO: a try-once caller never jumps ahead of callers already waiting.
    if (tryOnce && queue.size > 0) {
      throw this.busyError(resource, queue.size, "callers are already waiting");
    }
    const leaseId = newLeaseId();
    const waiter = new Waiter(hashLeaseId(leaseId), holder, ttlMs, metadata, tryOnce);
    queue.push(waiter);
    this.announceWaiters(resource);
    waiter.onSettle(() => this.leaveQueue(resource, waiter));
    if (!tryOnce) {
      const timer = this.clock.setTimer(waitMs, () =>
        waiter.fail(this.busyError(resource, queue.size - 1, `wait_timeout of ${waitMs / 1000}s ran out`)),
      );
      waiter.onSettle(() => timer.cancel());
    }
    if (signal) {
      const onAbort = () => waiter.fail(abortError(signal, resource));
      signal.addEventListener("abort", onAbort, { once: true });
      waiter.onSettle(() => signal.removeEventListener("abort", onAbort));
    }
    this.pump(resource);
    return { leaseId, lease: await waiter.promise };
  }

  /**
   * Ends a lease. When a caller is waiting, the lease passes straight to it
   * (the store's hand-over): the resource is never free in between, and the
   * next holder learns it holds as soon as the releaser does.
   */
  async release(leaseId: string): Promise<void> {
    const { hash, resource } = this.lookup(leaseId);
    const { released, handedOver } = await this.mutex.run(resource, async () => {
      const next = this.queues.get(resource)?.peek();
      if (next !== undefined && !next.tryOnce) return this.handOver(resource, hash, next);
      const done = await this.store.release(resource, hash, this.now);
      this.resourceByHash.delete(hash);
      this.observe(done ? { kind: "free", resource } : await this.store.read(resource, this.clock.now()));
      return { released: done, handedOver: false };
    });
    // Unless the lease went straight to the next waiter (the rest of the
    // queue then waits for the new holder), whatever the queue holds (try-once
    // callers, a waiter whose hand-over failed) is served next.
    if (!handedOver) setImmediate(() => this.pump(resource));
    if (!released) throw new LeaseNotFoundError();
  }

  /** Renews a live lease to now + ttl. Throws LeaseNotFoundError when it is unknown or expired. */
  async renew(leaseId: string): Promise<LeaseRecord> {
    const { hash, resource } = this.lookup(leaseId);
    const renewed = await this.mutex.run(resource, async () => {
      const lease = await this.store.renew(resource, hash, this.now);
      if (lease) this.observe({ kind: "held", resource, lease });
      else this.resourceByHash.delete(hash);
      return lease;
    });
    if (renewed === undefined) {
      void this.expireIfDue(resource);
      throw new LeaseNotFoundError();
    }
    if (!this.refreshing.has(resource) && this.store.horizonDue?.(resource, hash, this.clock.now())) this.refreshHorizon(resource, hash);
    return renewed;
  }

  /**
   * Pushes a lease's written expiry out in the background, at most once at a
   * time per resource. Not in the resource's turn: the store's guard keeps it
   * apart from every other write, and renewals keep being answered from the
   * promise meanwhile instead of queueing behind a write. A failure only
   * means a later renewal writes it itself (and reports its own error).
   */
  private refreshHorizon(resource: string, hash: string): void {
    if (this.refreshing.has(resource) || this.store.refreshHorizon === undefined) return;
    this.refreshing.set(resource, hash);
    this.startRefreshes();
  }

  /**
   * At most MAX_BACKGROUND_REFRESHES rewrites at a time, oldest request
   * first: a burst of them (leases granted together fall due together) must
   * not flood the disk that grants and releases wait for. A rewrite has a
   * ttl of slack before any renewal needs it.
   */
  private startRefreshes(): void {
    for (const [resource, hash] of this.refreshing) {
      if (this.refreshStarted.size >= MAX_BACKGROUND_REFRESHES || this.closed) return;
      if (this.refreshStarted.has(resource)) continue;
      this.refreshStarted.add(resource);
      void this.store
        .refreshHorizon!(resource, hash, this.now)
        .catch((err: Error) => this.log(`pushing out the horizon of "${resource}" failed: ${err.message}`))
        .finally(() => {
          this.refreshStarted.delete(resource);
          this.refreshing.delete(resource);
          this.startRefreshes();
        });
    }
  }

  /** Runs inside the resource's mutex. `handedOver`: the next waiter holds the lease now. */
  private async handOver(resource: string, hash: string, next: Waiter): Promise<{ released: boolean; handedOver: boolean }> {
    const outcome = await this.store.handOver(resource, hash, grantOf(next), this.now);
    this.resourceByHash.delete(hash);
    if (outcome.granted === undefined) {
      this.observe(outcome.released ? { kind: "free", resource } : await this.store.read(resource, this.clock.now()));
      return { released: outcome.released, handedOver: false };
    }
    this.observe({ kind: "held", resource, lease: outcome.granted });
    if (next.grant(outcome.granted)) return { released: true, handedOver: true };
    await this.undoGrant(resource, next);
    return { released: true, handedOver: false };
  }

  /**
   * Resources held now (live leases and unreadable files), with their queue
   * lengths, in name order. Served from what the manager already tracks (its
   * own changes and the watch keep it current), so a listing reads no files;
   * until the lock dir has been read once, it is read now (or its error
   * reported).
   */
  async list(prefix = ""): Promise<ListedLock[]> {
    if (!this.loaded) await this.resyncAll();
    const now = this.clock.now();
    const held: ListedLock[] = [];
    for (const state of this.blockers.values()) {
      if (!state.resource.startsWith(prefix) || blockedUntil(state) <= now) continue;
      held.push({ state, waiters: this.queues.get(state.resource)?.size ?? 0 });
    }
    return held.sort((a, b) => (a.state.resource < b.state.resource ? -1 : a.state.resource > b.state.resource ? 1 : 0));
  }

  /**
   * Throws the store error if the lock dir cannot be written right now. For
   * health: a service whose every Acquire would fail is not serving.
   */
  async probeWritable(): Promise<void> {
    await this.store.probeWritable?.();
  }

  /** Fails every waiter and stops timers. Lease files stay: leases outlive the service. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopWatching?.();
    this.rescanTimer?.cancel();
    for (const timer of this.expiryTimers.values()) timer.cancel();
    this.expiryTimers.clear();
    for (const queue of this.queues.values()) {
      for (const waiter of queue.drain()) waiter.fail(new ShuttingDownError());
    }
  }

  private lookup(leaseId: string): { hash: string; resource: string } {
    if (leaseId.length === 0 || leaseId.length > MAX_LEASE_ID_LENGTH) throw new LeaseNotFoundError();
    const hash = hashLeaseId(leaseId);
    const resource = this.resourceByHash.get(hash);
    if (resource === undefined) throw new LeaseNotFoundError();
    return { hash, resource };
  }

  private queueOf(resource: string): WaitQueue<Waiter> {
    let queue = this.queues.get(resource);
    if (!queue) {
      queue = new WaitQueue();
      this.queues.set(resource, queue);
    }
    return queue;
  }

  private leaveQueue(resource: string, waiter: Waiter): void {
    const queue = this.queues.get(resource);
    if (!queue) return;
    queue.remove(waiter);
    if (queue.size === 0 && !this.pumping.has(resource)) this.queues.delete(resource);
    this.announceWaiters(resource);
  }

  /**
   * Grants the resource to the waiters at the head of its queue, one at a
   * time, until one is blocked. At most one pump runs per resource.
   */
  private pump(resource: string): void {
    if (this.closed) return;
    if (this.pumping.has(resource)) {
      this.pumpAgain.add(resource);
      return;
    }
    this.pumping.add(resource);
    void this.drainQueue(resource).finally(() => {
      this.pumping.delete(resource);
      const queue = this.queues.get(resource);
      if (queue && queue.size === 0) this.queues.delete(resource);
      if (this.pumpAgain.delete(resource)) this.pump(resource);
    });
  }

  private async drainQueue(resource: string): Promise<void> {
    const queue = this.queues.get(resource);
    for (let head = queue?.peek(); head !== undefined && !this.closed; head = queue?.peek()) {
      const waiter = head;
      let outcome;
      try {
        outcome = await this.mutex.run(resource, async () => {
          // Served meanwhile (a hand-over) or gone: nothing to write.
          if (waiter.settled) return undefined;
          const result = await this.store.acquire(resource, grantOf(waiter), this.now);
          this.observe("granted" in result ? { kind: "held", resource, lease: result.granted } : result.blocked);
          return result;
        });
      } catch (err) {
        waiter.fail(err instanceof Error ? err : new Error(String(err)));
        continue;
      }
      if (outcome === undefined) continue;
      if ("granted" in outcome) {
        if (!waiter.grant(outcome.granted)) await this.mutex.run(resource, () => this.undoGrant(resource, waiter));
        continue;
      }
      if (!waiter.tryOnce) return; // woken by release, expiry or a watch event
      waiter.fail(this.busyError(resource, queue!.size - 1, "tried once"));
    }
  }

  /**
   * The waiter left (cancelled, deadline, timeout) while its grant was being
   * written: it must never hold the lease, so the grant is undone. Runs inside
   * the resource's mutex.
   */
  private async undoGrant(resource: string, waiter: Waiter): Promise<void> {
    try {
      await this.store.release(resource, waiter.leaseIdHash, this.now);
      this.observe({ kind: "free", resource });
    } catch (err) {
      this.log(`undoing a grant to a departed waiter failed: ${(err as Error).message}`);
    }
  }

  /**
   * Records what the store said about a resource and arms its expiry timer.
   * Called only inside the resource's mutex, so observations never go stale
   * out of order.
   */
  private observe(state: ResourceState): void {
    const { resource } = state;
    const previous = this.blockers.get(resource);
    const previousHash = previous?.kind === "held" ? previous.lease.leaseIdHash : undefined;
    const currentHash = state.kind === "held" ? state.lease.leaseIdHash : undefined;
    if (previousHash !== undefined && previousHash !== currentHash) this.resourceByHash.delete(previousHash);
    if (state.kind === "free") {
      this.blockers.delete(resource);
      this.expiryTimers.get(resource)?.cancel();
      this.expiryTimers.delete(resource);
      this.announceChange(previous, state);
      return;
    }
    this.blockers.set(resource, state);
    if (currentHash !== undefined) this.resourceByHash.set(currentHash, resource);
    this.armExpiry(resource, blockedUntil(state));
    this.announceChange(previous, state);
  }

  /**
   * Calls `listener` with every lock event from now on, synchronously and in
   * the order they happen (so it must be quick). Returns the unsubscriber.
   */
  subscribe(listener: LockEventListener, options: { renewals?: boolean } = {}): () => void {
    // Each subscription its own entry, so the same function may subscribe twice.
    const entry: LockEventListener = (event) => {
      if (event.type !== "RENEWED" || options.renewals !== false) listener(event);
    };
    this.eventListeners.add(entry);
    if (options.renewals !== false) this.renewalListeners++;
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      this.eventListeners.delete(entry);
      if (options.renewals !== false) this.renewalListeners--;
    };
  }

  /**
   * The resources held now (prefix-filtered, name order) as HELD events. Taken
   * in the same turn as subscribe(), it is exactly the state the events
   * that follow start from.
   */
  snapshot(prefix = ""): LockEvent[] {
    const now = this.clock.now();
    const held: LockEvent[] = [];
    for (const state of this.blockers.values()) {
      if (!state.resource.startsWith(prefix) || blockedUntil(state) <= now) continue;
      const waiters = this.waitingFor(state.resource);
      held.push({ type: "HELD", resource: state.resource, ...describeState(state), waiters, time: now });
    }
    return held.sort((a, b) => (a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : 0));
  }

  /** Waiters of all resources, for metrics. */
  waiterCount(): number {
    let total = 0;
    for (const count of this.announcedWaiters.values()) total += count;
    return total;
  }

  /**
   * Callers waiting for `resource`, not counting one being granted right now
   * (the head of the queue while the resource is free, or once its lease is
   * written): an uncontended acquire never shows as a waiter.
   */
  private waitingFor(resource: string): number {
    const queue = this.queues.get(resource);
    if (queue === undefined || queue.size === 0) return 0;
    const blocker = this.blockers.get(resource);
    if (blocker === undefined) return queue.size - 1;
    const grantedToHead = blocker.kind === "held" && blocker.lease.leaseIdHash === queue.peek()?.leaseIdHash;
    return grantedToHead ? queue.size - 1 : queue.size;
  }

  private announceChange(previous: BlockingState | undefined, state: ResourceState): void {
    const waiters = this.noteWaiters(state.resource);
    if (this.eventListeners.size === 0) return;
    // A renewal nobody listens for: skip building its event.
    const renewal = previous?.kind === "held" && state.kind === "held" && previous.lease.fencingToken === state.lease.fencingToken;
    if (renewal && this.renewalListeners === 0) return;
    for (const event of transitionEvents(previous, state, this.clock.now(), waiters)) this.emit(event);
  }

  /** WAITERS_CHANGED when the count differs from the one last announced. */
  private announceWaiters(resource: string): void {
    const before = this.announcedWaiters.get(resource) ?? 0;
    const waiters = this.noteWaiters(resource);
    if (waiters === before || this.eventListeners.size === 0) return;
    const blocker = this.blockers.get(resource);
    const holding = blocker ? describeState(blocker) : { state: "free" as const, holder: "", fencingToken: 0 };
    this.emit({ type: "WAITERS_CHANGED", resource, ...holding, waiters, time: this.clock.now() });
  }

  private noteWaiters(resource: string): number {
    const waiters = this.waitingFor(resource);
    if (waiters === 0) this.announcedWaiters.delete(resource);
    else this.announcedWaiters.set(resource, waiters);
    return waiters;
  }

  private emit(event: LockEvent): void {
    for (const listener of this.eventListeners) {
      try {
        listener(event);
      } catch (err) {
        this.log(`a lock event listener failed: ${(err as Error).message}`);
      }
    }
  }

  private armExpiry(resource: string, at: number): void {
    if (this.closed) return;
    this.expiryTimers.get(resource)?.cancel();
    this.expiryTimers.set(
      resource,
      this.clock.setTimer(at - this.clock.now(), () => {
        this.expiryTimers.delete(resource);
        void this.expireIfDue(resource);
      }),
    );
  }

  /** Reclaims an expired lease (removing its file) and wakes the queue. */
  private async expireIfDue(resource: string): Promise<void> {
    try {
      await this.resync(resource, () => this.store.reclaimIfExpired(resource, this.now));
    } catch (err) {
      this.log(`reclaiming "${resource}" failed: ${(err as Error).message}; retrying in 1s`);
      this.armExpiry(resource, this.clock.now() + 1_000);
    }
  }

  /** Runs a store read or reclaim under the resource's mutex, records it, and wakes waiters if free. */
  private async resync(resource: string, readState: () => Promise<ResourceState>): Promise<void> {
    const state = await this.mutex.run(resource, async () => {
      const current = await readState();
      this.observe(current);
      return current;
    });
    if (state.kind === "free") this.pump(resource);
  }

  /** A lease file changed outside our own calls (or may have): re-read it. */
  private onExternalChange(resource: string | undefined): void {
    if (this.closed) return;
    if (resource !== undefined) {
      void this.refresh(resource);
      return;
    }
    this.resyncAll().catch((err: Error) => this.log(`re-reading the lock dir failed: ${err.message}`));
  }

  /**
   * Re-reads every resource known here or present in the lock dir, each under
   * its mutex. Throws the store error if the dir cannot be listed.
   */
  private async resyncAll(): Promise<void> {
    const known = [...this.queues.keys(), ...this.blockers.keys()];
    const listed = await this.store.list(this.clock.now());
    const resources = new Set([...known, ...listed.map((state) => state.resource)]);
    await Promise.all([...resources].map((resource) => this.refresh(resource)));
    this.loaded = true;
  }

  private async refresh(resource: string): Promise<void> {
    try {
      await this.resync(resource, () => this.store.read(resource, this.now));
    } catch (err) {
      this.log(`re-reading "${resource}" failed: ${(err as Error).message}`);
    }
  }

  /** Safety net for lost watch events: re-read only resources someone waits for. */
  private scheduleSafetyRescan(): void {
    if (this.closed) return;
    this.rescanTimer = this.clock.setTimer(this.safetyRescanMs, () => {
      for (const resource of this.queues.keys()) void this.refresh(resource);
      this.scheduleSafetyRescan();
    });
  }

  private busyError(resource: string, waiting: number, why: string): ResourceBusyError {
    const blocker = this.blockers.get(resource);
    return blocker
      ? new ResourceBusyError(resource, holderOf(blocker), blockedUntil(blocker), Math.max(0, waiting), why)
      : new ResourceBusyError(resource, undefined, undefined, Math.max(0, waiting), why);
  }
}

function grantOf(waiter: Waiter): LeaseGrant {
  return { holder: waiter.holder, ttlMs: waiter.ttlMs, metadata: waiter.metadata, leaseIdHash: waiter.leaseIdHash };
}

/** Why a wait ended early, named after the resource it waited for. */
function abortError(signal: AbortSignal, resource: string): Error {
  if (signal.reason instanceof WaitDeadlineError) return new WaitDeadlineError(resource);
  if (signal.reason instanceof ShuttingDownError) return signal.reason;
  return new WaitCancelledError(resource);
}
