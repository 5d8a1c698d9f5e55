import { systemClock, type Clock, type TimerHandle } from "./clock.ts";
import {
  LeaseNotFoundError,
  LimitReachedError,
  ResourceBusyError,
  ShuttingDownError,
  WaitCancelledError,
  WaitDeadlineError,
} from "./errors.ts";
import { blockedUntil, holderOf, type BlockingState, type LeaseGrant, type LeaseRecord, type ResourceState } from "./lease.ts";
import { hashLeaseId, newLeaseId } from "./lease-id.ts";
import { KeyedMutex } from "./keyed-mutex.ts";
import { LockListing } from "./lock-listing.ts";
import { describeState, sameHolding, transitionEvents, type LockEvent, type LockEventListener } from "./lock-events.ts";
import {
  MAX_LEASE_ID_LENGTH,
  validateHolder,
  validateMetadata,
  validateReason,
  validateResource,
  validateTtl,
  validateWait,
} from "./limits.ts";
import { DEFAULT_SERVICE_LIMITS, type ServiceLimits } from "./service-limits.ts";
import { WaitQueue } from "./wait-queue.ts";
import { Waiter } from "./waiter.ts";
import type { AcquireOutcome, LeaseStore } from "./lease-store.ts";

export interface AcquireInput {
  resource: string;
  holder?: string;
  ttlMs?: number;
  /** 0 or undefined: try once. */
  waitMs?: number;
  metadata?: Record<string, string>;
  /** Who asks (a principal, or a connection), for the limit on leases per owner; unlimited when absent. */
  owner?: string;
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

export interface ForceReleased {
  /** What held the resource and was removed; undefined when it was free. */
  removed: BlockingState | undefined;
}

export interface LockManagerOptions {
  /** Reads the same clock as the manager (give it `clock` too). */
  store: LeaseStore;
  clock?: Clock;
  log?: (message: string) => void;
  /** How often resources with waiters are re-read in case a watch event was lost. */
  safetyRescanMs?: number;
  /** Waiters per resource and in total (the rest of ServiceLimits is the edges'). */
  limits?: Pick<ServiceLimits, "maxWaitersPerResource" | "maxWaiters" | "maxLeasesPerOwner">;
}

/**
 * What the manager knows of one resource, all of it derived from the store
 * (and rebuilt on start) except the callers waiting here.
 */
interface ResourceRecord {
  /** Callers waiting, in FIFO order. */
  readonly queue: WaitQueue<Waiter>;
  /** What holds it, as last seen in the store (for busy messages and listings); undefined when free. */
  blocker: BlockingState | undefined;
  /** Fires when the blocker ends, to reclaim it. */
  expiry: TimerHandle | undefined;
  /** A pump is granting to the queue; `pumpAgain` asks it to look once more when it ends. */
  pumping: boolean;
  pumpAgain: boolean;
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
  /** One record per resource that is held, waited for or being granted. */
  private readonly resources = new Map<string, ResourceRecord>();
  /** sha256(lease id) → resource, for leases granted with an id. */
  private readonly resourceByHash = new Map<string, string>();
  private readonly safetyRescanMs: number;
  private readonly limits: Pick<ServiceLimits, "maxWaitersPerResource" | "maxWaiters" | "maxLeasesPerOwner">;
  /** Callers waiting (not try-once) in all queues. */
  private waiting = 0;
  /** Lease id hashes of each owner's leases and pending acquires; pruned lazily (see admitOwner). */
  private readonly hashesByOwner = new Map<string, Set<string>>();
  /** Hashes of acquires not yet settled. */
  private readonly pendingHashes = new Set<string>();
  private ownerAdmissions = 0;
  /** Whether every lease file has been read once, so the records list them all. */
  private loaded = false;
  private stopWatching: (() => void) | undefined;
  private rescanTimer: TimerHandle | undefined;
  private closed = false;
  private readonly eventListeners = new Set<LockEventListener>();
  /** Listeners that want RENEWED events (one per renewal: the hot path of KeepAlive). */
  private renewalListeners = 0;
  /** The waiter count last announced per resource (absent: 0). */
  private readonly announcedWaiters = new Map<string, number>();
  /** Cached listings' change marks (see cachedListing). */
  private readonly listingWatchers = new Set<(resource: string) => void>();

  constructor(options: LockManagerOptions) {
    this.store = options.store;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? (() => {});
    this.safetyRescanMs = options.safetyRescanMs ?? 2_000;
    this.limits = options.limits ?? DEFAULT_SERVICE_LIMITS;
  }

  /** Loads every lease from the store: live ones stay held, expired ones are reclaimed. */
  async start(): Promise<void> {
    try {
      await this.store.open();
      const states = await this.store.list();
      for (const state of states) this.observe(state);
      this.loaded = true;
      this.log(`loaded ${states.length} lease(s) from ${this.store.location}`);
    } catch (err) {
      // Keep serving: each request reports the store error until it is fixed.
      this.log(`store not usable yet: ${(err as Error).message}`);
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

    const { queue } = this.recordOf(resource);
    const tryOnce = waitMs === 0;
    // FIFO: a try-once caller never jumps ahead of callers already waiting.
    if (tryOnce && queue.size > 0) {
      throw this.busyError(resource, queue.size, "callers are already waiting");
    }
    if (!tryOnce) this.admitWaiter(resource, queue.size);
    const owned = input.owner === undefined ? undefined : this.admitOwner(input.owner);
    const leaseId = newLeaseId();
    const waiter = new Waiter(hashLeaseId(leaseId), holder, ttlMs, metadata, tryOnce);
    queue.push(waiter);
    if (owned) {
      owned.add(waiter.leaseIdHash);
      this.pendingHashes.add(waiter.leaseIdHash);
      waiter.onSettle(() => this.pendingHashes.delete(waiter.leaseIdHash));
    }
    if (!tryOnce) {
      this.waiting++;
      waiter.onSettle(() => this.waiting--);
    }
    this.announceWaiters(resource);
    waiter.onSettle(() => this.leaveQueue(resource, waiter));
    if (this.store.sharedQueue && !tryOnce) {
      // Its place in the shared queue goes when it does; after its join, which the mutex orders first.
      waiter.onSettle(() => {
        if (waiter.granted) return;
        this.mutex.run(resource, () => this.store.leaveQueue(resource, waiter.leaseIdHash)).catch((err: Error) => {
          this.log(`leaving the queue of "${resource}" failed: ${err.message}; the place goes with this replica's session`);
        });
      });
    }
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
    // Only a waiter at the head can be granted now (FIFO): one behind others
    // is reached by the pump already draining, or by the release, expiry or
    // watch event that frees the resource. Pumping for each arrival would
    // re-try the blocked head (a guarded file read) once per waiter. With a
    // shared queue every waiter joins it on arrival (the pump does), so its
    // place is where it arrived among every replica's callers.
    if (queue.peek() === waiter || this.store.sharedQueue) this.pump(resource);
    return { leaseId, lease: await waiter.promise };
  }

  /**
   * Ends a lease. When a caller is waiting, the lease passes straight to it
   * (the store's hand-over): the resource is never free in between, and the
   * next holder learns it holds as soon as the releaser does.
   */
  async release(leaseId: string): Promise<void> {
    const { hash, resource } = await this.lookup(leaseId);
    const { released, handedOver } = await this.mutex.run(resource, async () => {
      const next = this.resources.get(resource)?.queue.peek();
      if (next !== undefined && !next.tryOnce) return this.handOver(resource, hash, next);
      const done = await this.store.release(resource, hash);
      this.resourceByHash.delete(hash);
      this.observe(done ? { kind: "free", resource } : await this.store.read(resource));
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
    const { hash, resource } = await this.lookup(leaseId);
    const renewed = await this.mutex.run(resource, async () => {
      const lease = await this.store.renew(resource, hash);
      if (lease) this.observe({ kind: "held", resource, lease });
      else this.resourceByHash.delete(hash);
      return lease;
    });
    if (renewed === undefined) {
      void this.reread(resource, "reclaim");
      throw new LeaseNotFoundError();
    }
    return renewed;
  }

  /** Runs inside the resource's mutex. `handedOver`: the next waiter holds the lease now. */
  private async handOver(resource: string, hash: string, next: Waiter): Promise<{ released: boolean; handedOver: boolean }> {
    const outcome = await this.store.handOver(resource, hash, grantOf(next));
    this.resourceByHash.delete(hash);
    if (outcome.granted === undefined) {
      this.observe(outcome.released ? { kind: "free", resource } : await this.store.read(resource));
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
    for (const record of this.resources.values()) {
      const state = record.blocker;
      if (state === undefined || !state.resource.startsWith(prefix) || blockedUntil(state) <= now) continue;
      held.push({ state, waiters: this.listedWaiters(state.resource, record) });
    }
    return held.sort((a, b) => (a.state.resource < b.state.resource ? -1 : a.state.resource > b.state.resource ? 1 : 0));
  }

  /**
   * What list() answers, kept encoded per resource by `encode` and re-encoded
   * only where something changed (issue 12: listings of 10,000 locks).
   */
  cachedListing(encode: (lock: ListedLock) => Uint8Array): LockListing {
    return new LockListing(
      {
        clock: this.clock,
        list: () => this.list(),
        current: (resource) => {
          const record = this.resources.get(resource);
          return record?.blocker && { state: record.blocker, waiters: this.listedWaiters(resource, record) };
        },
        // One host: the tracked state is the lock dir's. Shared: only while the store can confirm it is current.
        confirmCurrent: async () => {
          if (this.store.sharedQueue) await this.store.probeWritable();
        },
        watch: (onChange) => {
          this.listingWatchers.add(onChange);
          return () => this.listingWatchers.delete(onChange);
        },
      },
      encode,
    );
  }

  /**
   * The resource a live lease id holds, or undefined: for edges that must
   * check a caller's permission on it before a Release or a renewal.
   */
  async resourceOfLease(leaseId: string): Promise<string | undefined> {
    try {
      return (await this.lookup(leaseId)).resource;
    } catch (err) {
      if (err instanceof LeaseNotFoundError) return undefined;
      throw err;
    }
  }

  /**
   * An operator frees `resource` whoever holds it (a stuck holder, a file
   * protocol lease, an unreadable file): its holder's next renewal finds the
   * lease gone, and the next waiter is granted with a higher fencing token.
   * `by` (the principal) and `reason` go to the log with the holder.
   */
  async forceRelease(resource: string, by: string, reason: string): Promise<ForceReleased> {
    validateResource(resource);
    validateReason(reason);
    if (this.closed) throw new ShuttingDownError();
    const removed = await this.mutex.run(resource, async () => {
      const previous = await this.store.forceRemove(resource);
      this.observe({ kind: "free", resource }, true);
      return previous;
    });
    if (removed !== undefined) {
      const holder = removed.kind === "held" ? `"${removed.lease.holder}" (fencing token ${removed.lease.fencingToken})` : `an unreadable lease file (${removed.reason})`;
      this.log(`force-release of "${resource}" by ${JSON.stringify(by)}: removed ${holder}; reason: ${JSON.stringify(reason)}`);
      this.pump(resource);
    }
    return { removed };
  }

  /**
   * Throws the store error if the lock dir cannot be written right now. For
   * health: a service whose every Acquire would fail is not serving.
   */
  async probeWritable(): Promise<void> {
    await this.store.probeWritable();
  }

  /** Fails every waiter and stops timers. Lease files stay: leases outlive the service. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopWatching?.();
    void this.store.close().catch((err: Error) => this.log(`closing the store failed: ${err.message}`));
    this.rescanTimer?.cancel();
    for (const record of this.resources.values()) {
      record.expiry?.cancel();
      record.expiry = undefined;
      for (const waiter of record.queue.drain()) waiter.fail(new ShuttingDownError());
    }
  }

  /** With a shared store, a lease granted through another replica a moment ago may not be indexed here yet: the store finds it. */
  private async lookup(leaseId: string): Promise<{ hash: string; resource: string }> {
    if (leaseId.length === 0 || leaseId.length > MAX_LEASE_ID_LENGTH) throw new LeaseNotFoundError();
    const hash = hashLeaseId(leaseId);
    const resource = this.resourceByHash.get(hash) ?? (this.store.sharedQueue ? await this.store.findLease(hash) : undefined);
    if (resource === undefined) throw new LeaseNotFoundError();
    return { hash, resource };
  }

  /** RESOURCE_EXHAUSTED when one more waiter would pass a limit; try-once callers never wait. */
  private admitWaiter(resource: string, queued: number): void {
    const { maxWaitersPerResource, maxWaiters } = this.limits;
    if (queued >= maxWaitersPerResource) {
      throw new LimitReachedError("max-waiters-per-resource", maxWaitersPerResource, `${queued} callers already wait for resource "${resource}"`);
    }
    if (this.waiting >= maxWaiters) {
      throw new LimitReachedError("max-waiters", maxWaiters, `${this.waiting} callers already wait for locks`);
    }
  }

  /**
   * The owner's set of hashes, once RESOURCE_EXHAUSTED is ruled out. Hashes
   * of leases that ended (released, expired, lost, never granted) are pruned
   * here rather than tracked on every path that ends a lease: what is live
   * is what resourceByHash or a pending acquire still has.
   */
  private admitOwner(owner: string): Set<string> {
    // Every so often, forget ended leases and owners (connections come and go).
    if (++this.ownerAdmissions % 1024 === 0) {
      for (const [name, hashes] of this.hashesByOwner) {
        this.pruneEnded(hashes);
        if (hashes.size === 0) this.hashesByOwner.delete(name);
      }
    }
    let owned = this.hashesByOwner.get(owner);
    if (!owned) {
      owned = new Set();
      this.hashesByOwner.set(owner, owned);
    }
    const { maxLeasesPerOwner } = this.limits;
    if (owned.size >= maxLeasesPerOwner) {
      this.pruneEnded(owned);
      if (owned.size >= maxLeasesPerOwner) {
        throw new LimitReachedError("max-leases-per-owner", maxLeasesPerOwner, `${owner} holds or waits for ${owned.size} leases`);
      }
    }
    return owned;
  }

  private pruneEnded(hashes: Set<string>): void {
    for (const hash of hashes) if (!this.resourceByHash.has(hash) && !this.pendingHashes.has(hash)) hashes.delete(hash);
  }

  private recordOf(resource: string): ResourceRecord {
    let record = this.resources.get(resource);
    if (!record) {
      record = { queue: new WaitQueue(), blocker: undefined, expiry: undefined, pumping: false, pumpAgain: false };
      this.resources.set(resource, record);
    }
    return record;
  }

  /** Drops a record that holds nothing: no waiter, no blocker, no timer, no pump. */
  private forgetIfIdle(resource: string): void {
    const record = this.resources.get(resource);
    if (record && record.queue.size === 0 && record.blocker === undefined && record.expiry === undefined && !record.pumping) {
      this.resources.delete(resource);
    }
  }

  private leaveQueue(resource: string, waiter: Waiter): void {
    this.resources.get(resource)?.queue.remove(waiter);
    this.forgetIfIdle(resource);
    this.announceWaiters(resource);
  }

  /**
   * Grants the resource to the waiters at the head of its queue, one at a
   * time, until one is blocked. At most one pump runs per resource.
   */
  private pump(resource: string): void {
    if (this.closed) return;
    const record = this.recordOf(resource);
    if (record.pumping) {
      record.pumpAgain = true;
      return;
    }
    record.pumping = true;
    void this.drainQueue(resource, record.queue).finally(() => {
      record.pumping = false;
      const again = record.pumpAgain;
      record.pumpAgain = false;
      this.forgetIfIdle(resource);
      if (again) this.pump(resource);
    });
  }

  private async drainQueue(resource: string, queue: WaitQueue<Waiter>): Promise<void> {
    for (let head = queue.peek(); head !== undefined && !this.closed; head = queue.peek()) {
      const waiter = head;
      const outcome = await this.attempt(resource, waiter);
      if (outcome === "settled") continue;
      if (!waiter.tryOnce) {
        // Woken by release, expiry or a watch event. With a shared queue,
        // the callers behind join it now, in the order they arrived.
        if (this.store.sharedQueue) await this.joinSharedQueue(resource, queue);
        return;
      }
      waiter.fail(this.busyError(resource, this.store.sharedQueue ? this.store.queuedCount(resource) : queue.size - 1, "tried once"));
    }
  }

  /** Callers behind the head that have not joined the shared queue yet, in order. */
  private async joinSharedQueue(resource: string, queue: WaitQueue<Waiter>): Promise<void> {
    for (const waiter of queue.inOrder()) {
      if (this.closed) return;
      if (waiter.joined || waiter.tryOnce || waiter.settled) continue;
      await this.attempt(resource, waiter);
    }
  }

  /** One try to grant `waiter`, under the resource's mutex: "settled" once it holds the lease or failed. */
  private async attempt(resource: string, waiter: Waiter): Promise<"settled" | "waiting"> {
    let outcome: AcquireOutcome | undefined;
    try {
      outcome = await this.mutex.run(resource, async () => {
        // Served meanwhile (a hand-over) or gone: nothing to write.
        if (waiter.settled) return undefined;
        const result = await this.store.acquire(resource, grantOf(waiter), waiter.tryOnce ? "try" : "wait");
        if (!waiter.tryOnce) waiter.joined = true;
        if ("granted" in result) this.observe({ kind: "held", resource, lease: result.granted });
        else if ("blocked" in result) this.observe(result.blocked);
        return result;
      });
    } catch (err) {
      waiter.fail(err instanceof Error ? err : new Error(String(err)));
      return "settled";
    }
    if (outcome === undefined) return "settled";
    if (!("granted" in outcome)) return "waiting";
    if (!waiter.grant(outcome.granted)) await this.mutex.run(resource, () => this.undoGrant(resource, waiter));
    return "settled";
  }

  /**
   * The waiter left (cancelled, deadline, timeout) while its grant was being
   * written: it must never hold the lease, so the grant is undone. Runs inside
   * the resource's mutex.
   */
  private async undoGrant(resource: string, waiter: Waiter): Promise<void> {
    try {
      await this.store.release(resource, waiter.leaseIdHash);
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
  private observe(state: ResourceState, forced = false): void {
    const { resource } = state;
    const record = state.kind === "free" ? this.resources.get(resource) : this.recordOf(resource);
    if (record === undefined) return;
    const previous = record.blocker;
    const previousHash = previous?.kind === "held" ? previous.lease.leaseIdHash : undefined;
    const currentHash = state.kind === "held" ? state.lease.leaseIdHash : undefined;
    if (previousHash !== undefined && previousHash !== currentHash) this.resourceByHash.delete(previousHash);
    record.expiry?.cancel();
    record.expiry = undefined;
    if (state.kind === "free") {
      record.blocker = undefined;
      this.forgetIfIdle(resource);
      this.announceChange(previous, state, forced);
      return;
    }
    record.blocker = state;
    if (currentHash !== undefined) this.resourceByHash.set(currentHash, resource);
    this.armExpiry(record, resource, blockedUntil(state));
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
    for (const { blocker: state } of this.resources.values()) {
      if (state === undefined || !state.resource.startsWith(prefix) || blockedUntil(state) <= now) continue;
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
    if (this.store.sharedQueue) return this.store.queuedCount(resource);
    const record = this.resources.get(resource);
    if (record === undefined || record.queue.size === 0) return 0;
    const { queue, blocker } = record;
    if (blocker === undefined) return queue.size - 1;
    const grantedToHead = blocker.kind === "held" && blocker.lease.leaseIdHash === queue.peek()?.leaseIdHash;
    return grantedToHead ? queue.size - 1 : queue.size;
  }

  /** `forced`: an operator's ForceRelease ended it, announced as FORCE_RELEASED. */
  private announceChange(previous: BlockingState | undefined, state: ResourceState, forced = false): void {
    // A re-read that found the holding as it was announces nothing, so it must
    // not note the waiter count either: a shared queue's count that changed
    // meanwhile goes out as WAITERS_CHANGED (announceWaiters, after the re-read).
    const quiet = state.kind === "free" ? previous === undefined : previous !== undefined && sameHolding(previous, state) && blockedUntil(previous) === blockedUntil(state);
    if (quiet) return;
    const waiters = this.noteWaiters(state.resource);
    if (this.eventListeners.size === 0) return;
    // A renewal nobody listens for: skip building its event.
    const renewal = previous?.kind === "held" && state.kind === "held" && previous.lease.fencingToken === state.lease.fencingToken;
    if (renewal && this.renewalListeners === 0) return;
    for (const event of transitionEvents(previous, state, this.clock.now(), waiters)) {
      this.emit(forced && (event.type === "RELEASED" || event.type === "EXPIRED") ? { ...event, type: "FORCE_RELEASED" } : event);
    }
  }

  /** WAITERS_CHANGED when the count differs from the one last announced. */
  private announceWaiters(resource: string): void {
    const before = this.announcedWaiters.get(resource) ?? 0;
    const waiters = this.noteWaiters(resource);
    if (waiters === before || this.eventListeners.size === 0) return;
    const blocker = this.resources.get(resource)?.blocker;
    const holding = blocker ? describeState(blocker) : { state: "free" as const, holder: "", fencingToken: 0 };
    this.emit({ type: "WAITERS_CHANGED", resource, ...holding, waiters, time: this.clock.now() });
  }

  private noteWaiters(resource: string): number {
    // Every change of a blocker (observe) or of a queue (announceWaiters) passes here.
    for (const onChange of this.listingWatchers) onChange(resource);
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

  private armExpiry(record: ResourceRecord, resource: string, at: number): void {
    if (this.closed) return;
    record.expiry?.cancel();
    record.expiry = this.clock.setTimer(at - this.clock.now(), () => {
      record.expiry = undefined;
      void this.reread(resource, "reclaim");
    });
  }

  /**
   * The one way a resource is re-read: under its mutex, from the store
   * ("reclaim" also removes a lease that has expired), recorded, and its
   * waiters woken if it is free. Errors are logged; a failed reclaim is tried
   * again in a second, since nothing else would end that lease.
   */
  private async reread(resource: string, how: "read" | "reclaim"): Promise<void> {
    let state: ResourceState;
    try {
      state = await this.mutex.run(resource, async () => {
        const current = how === "reclaim" ? await this.store.reclaimIfExpired(resource) : await this.store.read(resource);
        this.observe(current);
        return current;
      });
    } catch (err) {
      if (how === "read") {
        this.log(`re-reading "${resource}" failed: ${(err as Error).message}`);
        return;
      }
      this.log(`reclaiming "${resource}" failed: ${(err as Error).message}; retrying in 1s`);
      this.armExpiry(this.recordOf(resource), resource, this.clock.now() + 1_000);
      return;
    }
    // A shared queue may have changed without the holder changing.
    if (this.store.sharedQueue) this.announceWaiters(resource);
    if (state.kind === "free" || this.store.sharedQueue) this.pump(resource);
  }

  /** A lease file changed outside our own calls (or may have): re-read it. */
  private onExternalChange(resource: string | undefined): void {
    if (this.closed) return;
    if (resource !== undefined) {
      void this.reread(resource, "read");
      return;
    }
    this.resyncAll().catch((err: Error) => this.log(`re-reading the lock dir failed: ${err.message}`));
  }

  /**
   * Re-reads every resource known here or present in the lock dir, each under
   * its mutex. Throws the store error if the dir cannot be listed.
   */
  private async resyncAll(): Promise<void> {
    const known = [...this.resources.keys()];
    const listed = await this.store.list();
    const resources = new Set([...known, ...listed.map((state) => state.resource)]);
    await Promise.all([...resources].map((resource) => this.reread(resource, "read")));
    this.loaded = true;
  }

  /** Safety net for lost watch events: re-read only resources someone waits for. */
  private scheduleSafetyRescan(): void {
    if (this.closed) return;
    this.rescanTimer = this.clock.setTimer(this.safetyRescanMs, () => {
      for (const [resource, { queue }] of this.resources) if (queue.size > 0) void this.reread(resource, "read");
      this.scheduleSafetyRescan();
    });
  }

  /** A listing's waiter count: every replica's with a shared queue, else this process's queue. */
  private listedWaiters(resource: string, record: ResourceRecord): number {
    return this.store.sharedQueue ? this.store.queuedCount(resource) : record.queue.size;
  }

  private busyError(resource: string, waiting: number, why: string): ResourceBusyError {
    const blocker = this.resources.get(resource)?.blocker;
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
