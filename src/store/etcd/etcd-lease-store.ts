import { hostname } from "node:os";
import type { Clock } from "../../core/clock.ts";
import { StoreFailureError, StoreUnavailableError } from "../../core/errors.ts";
import type { BlockingState, LeaseGrant, LeaseRecord, ResourceState } from "../../core/lease.ts";
import type { AcquireOutcome, HandOverOutcome, LeaseStore, QueuePosition } from "../../core/lease-store.ts";
import { Compare_CompareResult, Compare_CompareTarget, type Compare, type RequestOp, type TxnResponse } from "../../gen/etcd/etcdserverpb/rpc.ts";
import type { EtcdClient } from "./etcd-client.ts";
import { decodeCounter, decodeHolder, encodeHolder, EtcdKeyLayout, type HolderValue } from "./etcd-keys.ts";
import { EtcdLeases, etcdTtlSeconds, type TakenLease } from "./etcd-leases.ts";
import { KeyMirror, type MirroredKey, type MirroredResource } from "./key-mirror.ts";

export interface EtcdLeaseStoreOptions {
  client: EtcdClient;
  /** Key prefix every key of this deployment lives under (default "/mcp-lockd/"). */
  prefix: string;
  /** Every fencing token issued is above this (a fleet moving from lease files passes its highest token). */
  tokenFloor?: number;
  clock: Clock;
  onWarning?: (message: string) => void;
}

export const DEFAULT_ETCD_PREFIX = "/mcp-lockd/";

/** How often a write is tried again when etcd refused its compares (the copy it was decided on had changed). */
const MAX_ATTEMPTS = 8;
const CALL_TIMEOUT_MS = 1_500;
/** No attempt starts after this: a caller learns UNAVAILABLE within a few seconds, and calls queued behind it on the resource do not pile up. */
const DECIDE_DEADLINE_MS = 5_000;

/** A write decided on the mirror: etcd applies `success` only if every compare still holds. */
interface Write<T> {
  compare: Compare[];
  success: RequestOp[];
  /** Applied instead when a compare fails (joining the queue when the grant lost a race). */
  failure?: RequestOp[];
  /** etcd said a lease the write binds a key to does not exist (a spare that expired): drop it before deciding again. */
  leaseGone?(): void;
  /** The answer once etcd answered; `retry` to decide again on a newer copy. */
  answer(response: TxnResponse): T | "retry" | Promise<T | "retry">;
}

type Decision<T> = { done: T } | { write: Write<T> };

/** A delete of the holder key an attempt sent: the version it targeted, and that version's etcd lease. */
interface Removal {
  key: MirroredKey;
  etcdLease?: bigint;
}

/**
 * Leases in etcd, shared by every replica on the same prefix (docs/etcd.md):
 * the holder, the fencing counter and the FIFO queue of each resource are
 * keys, every change is one Txn guarded by compares, and a replica follows
 * every change through one watch (KeyMirror). One etcd lease per mcp-lockd
 * lease, renewed by whichever replica the holder renews through.
 */
export class EtcdLeaseStore implements LeaseStore {
  readonly location: string;
  readonly sharedQueue = true;
  private readonly client: EtcdClient;
  private readonly layout: EtcdKeyLayout;
  private readonly mirror: KeyMirror;
  private readonly leases: EtcdLeases;
  private readonly clock: Clock;
  private readonly warn: (message: string) => void;
  private readonly tokenFloor: number;
  private readonly host = hostname();
  /** This replica's waiters in the shared queues: resource → lease-id hash → create revision of its key. */
  private readonly joined = new Map<string, Map<string, bigint>>();
  /** lease-id hash → resource, for every holder in the mirror. */
  private readonly holders = new Map<string, string>();
  private readonly holderHashOf = new Map<string, string>();
  /** The revision of this replica's last write, in all and per resource: reads wait until the mirror has it. */
  private lastWrite = 0n;
  private readonly lastWriteOf = new Map<string, bigint>();
  private listener: ((resource: string | undefined) => void) | undefined;
  private closed = false;
  private readonly decodedHolders = new WeakMap<MirroredKey, HolderValue | string>();

  constructor(options: EtcdLeaseStoreOptions) {
    this.client = options.client;
    this.layout = new EtcdKeyLayout(options.prefix);
    this.location = `etcd ${options.client.endpoints.join(",")} prefix ${options.prefix}`;
    this.clock = options.clock;
    this.warn = options.onWarning ?? (() => {});
    this.tokenFloor = options.tokenFloor ?? 0;
    this.mirror = new KeyMirror(this.client, this.layout, (resource) => this.mirrorChanged(resource), this.warn);
    this.leases = new EtcdLeases(this.client, this.warn, () => this.rejoinAll());
  }

  async open(): Promise<void> {
    await this.mirror.start();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.mirror.close();
    this.leases.close();
  }

  async read(resource: string): Promise<ResourceState> {
    await this.caughtUp(resource);
    return this.stateOf(resource, this.mirror.get(resource));
  }

  async list(): Promise<BlockingState[]> {
    await this.caughtUp();
    const states: BlockingState[] = [];
    for (const resource of [...this.mirror.names()].sort()) {
      const state = this.stateOf(resource, this.mirror.get(resource));
      if (state.kind !== "free") states.push(state);
    }
    return states;
  }

  acquire(resource: string, grant: LeaseGrant, position: QueuePosition = "try"): Promise<AcquireOutcome> {
    // A waiter that joined the queue is granted only once it is first; one that has not joins it unless it is granted at once.
    let etcdLease: TakenLease | undefined;
    /** A write binding `etcdLease` to the holder key was sent: if we then give up, it may have landed. */
    let sentWithLease = false;
    const ttlSeconds = etcdTtlSeconds(grant.ttlMs);
    const result = this.decide<AcquireOutcome>(resource, async (entry, now) => {
      const holder = this.holderOf(resource, entry);
      // An earlier try whose answer was lost did land. Its etcd lease is the holder key's now: never a spare again.
      if (typeof holder === "object" && holder.lease.leaseIdHash === grant.leaseIdHash) {
        if (etcdLease?.id === holder.etcdLease) etcdLease = undefined;
        this.forgetJoined(resource, grant.leaseIdHash);
        await this.confirmGrant(resource, this.leases.renew(holder.etcdLease), entry!.holder!.modRevision);
        return { done: { granted: holder.lease } };
      }
      const state = this.stateOf(resource, entry);
      const blocked = state.kind !== "free" && isLive(state, now) ? state : undefined;
      const queue = [...(entry?.waiters ?? new Map<string, MirroredKey>())];
      let mine = this.joined.get(resource)?.get(grant.leaseIdHash);
      // Its key went with a lost session (the mirror has every write of ours): it joins again, at the back.
      if (mine !== undefined && !entry?.waiters.has(grant.leaseIdHash)) {
        this.forgetJoined(resource, grant.leaseIdHash);
        mine = undefined;
        // Unless this replica's other waiters kept theirs (a grant to it was withdrawn, taking its key): behind
        // them it would wait for ever, since the manager tries its waiters in arrival order. It gives up instead.
        if (this.joinedWaiterKept(resource, entry)) {
          throw new StoreUnavailableError(`etcd: a grant of "${resource}" to this caller was withdrawn and its place in the queue went with it; ask again`);
        }
      }
      // A join that landed though its answer was lost (a timeout across a leader change), and was
      // then written again: its place is its key's create revision, not the revision of either write.
      const landed = entry?.waiters.get(grant.leaseIdHash);
      if (landed !== undefined && mine !== landed.createRevision) mine = this.rememberJoined(resource, grant.leaseIdHash, landed.createRevision);
      const queuedOutcome = (): AcquireOutcome => (blocked ? { blocked } : { queued: true });
      if (mine !== undefined) {
        if (blocked || queue.some(([, key]) => key.createRevision < mine)) return { done: queuedOutcome() };
      } else if (blocked || queue.length > 0) {
        if (position === "try") return { done: queuedOutcome() };
        return { write: await this.joinWrite(resource, grant.leaseIdHash, queuedOutcome) };
      }
      etcdLease ??= await this.leases.take(ttlSeconds);
      const lease = this.newLease(resource, grant, now, this.nextToken(resource, entry));
      const compare = [...this.holderCompares(resource, entry), this.counterCompare(resource, entry)];
      const success = [this.putHolder({ lease, etcdLease: etcdLease.id }), this.putCounter(lease)];
      if (mine !== undefined) {
        compare.push(cmp(this.layout.waiter(resource, grant.leaseIdHash), Compare_CompareTarget.CREATE, mine));
        success.push(this.deleteKey(this.layout.waiter(resource, grant.leaseIdHash)));
      } else {
        const { key, rangeEnd } = this.layout.queue(resource);
        compare.push({ ...cmp(key, Compare_CompareTarget.VERSION, 0n), rangeEnd });
      }
      const { renewed } = etcdLease;
      renewed.catch(() => {});
      const join = position === "wait" && mine === undefined ? await this.joinWrite(resource, grant.leaseIdHash, queuedOutcome) : undefined;
      sentWithLease = true;
      return {
        write: {
          compare,
          success,
          failure: join?.success,
          leaseGone: () => (etcdLease = undefined),
          answer: async (response) => {
            if (!response.succeeded) return join ? join.answer(response) : "retry";
            etcdLease = undefined;
            this.forgetJoined(resource, grant.leaseIdHash);
            await this.confirmGrant(resource, renewed, response.header?.revision ?? 0n);
            return { granted: lease };
          },
        },
      };
    });
    return result.then(
      (outcome) => {
        if (etcdLease !== undefined) this.leases.giveBack(etcdLease.id, ttlSeconds);
        return outcome;
      },
      (err: unknown) => {
        // Given up after a write whose answer was lost: it may hold a holder key nobody was told of.
        // Revoking ends that key too (the caller is told UNAVAILABLE); never a spare again.
        if (etcdLease !== undefined) {
          if (sentWithLease) this.leases.revoke(etcdLease.id);
          else this.leases.giveBack(etcdLease.id, ttlSeconds);
        }
        throw err;
      },
    );
  }

  renew(resource: string, leaseIdHash: string): Promise<LeaseRecord | undefined> {
    return this.decide(resource, async (entry, now) => {
      const holder = this.holderOf(resource, entry);
      if (typeof holder !== "object" || holder.lease.leaseIdHash !== leaseIdHash || holder.lease.expiresAt <= now) return { done: undefined };
      const lease = { ...holder.lease, expiresAt: now + holder.lease.ttlMs };
      const renewed = this.leases.renew(holder.etcdLease);
      renewed.catch(() => {});
      return {
        write: {
          compare: this.holderCompares(resource, entry),
          success: [this.putHolder({ lease, etcdLease: holder.etcdLease })],
          answer: async (response) => {
            if (!response.succeeded) return "retry";
            return (await renewed) > 0n ? lease : undefined;
          },
        },
      };
    });
  }

  release(resource: string, leaseIdHash: string): Promise<boolean> {
    let attempted: (Removal & { ours: boolean }) | undefined;
    return this.decide<boolean>(resource, (entry, now) => {
      if (this.removalLanded(entry, attempted)) return { done: attempted!.ours };
      const holder = this.holderOf(resource, entry);
      if (typeof holder !== "object") return { done: false };
      const ours = holder.lease.leaseIdHash === leaseIdHash && holder.lease.expiresAt > now;
      // Not ours: an expired lease is reclaimed on the way, anything else stays.
      if (!ours && holder.lease.expiresAt > now) return { done: false };
      attempted = { key: entry!.holder!, etcdLease: holder.etcdLease, ours };
      return this.removeHolder(resource, entry, () => {
        if (ours) this.leases.giveBack(holder.etcdLease, etcdTtlSeconds(holder.lease.ttlMs));
        else this.leases.revoke(holder.etcdLease);
        return ours;
      });
    });
  }

  handOver(resource: string, leaseIdHash: string, next: LeaseGrant): Promise<HandOverOutcome> {
    /** What the last attempt wrote: the version of the releaser's holder key it replaced or deleted, and how. */
    let attempted: (Removal & { etcdLease: bigint; handedOver: boolean }) | undefined;
    return this.decide<HandOverOutcome>(resource, async (entry, now) => {
      const holder = this.holderOf(resource, entry);
      if (attempted) {
        // An attempt whose answer was lost did land: `next` holds it (its grant stands once its etcd lease is
        // confirmed), or the releaser's version was deleted (released only).
        if (attempted.handedOver && typeof holder === "object" && holder.lease.leaseIdHash === next.leaseIdHash) {
          if (holder.etcdLease !== attempted.etcdLease) this.leases.revoke(attempted.etcdLease);
          return { done: await this.handedOver(resource, next, holder.lease, this.leases.renewUnlessFresh(holder.etcdLease), entry!.holder!.modRevision) };
        }
        if (!attempted.handedOver && this.removalLanded(entry, attempted)) return { done: { released: true } };
      }
      if (typeof holder !== "object" || holder.lease.leaseIdHash !== leaseIdHash || holder.lease.expiresAt <= now) return { done: { released: false } };
      const mine = this.joined.get(resource)?.get(next.leaseIdHash);
      const first = firstWaiter(entry);
      const oldTtl = etcdTtlSeconds(holder.lease.ttlMs);
      if (mine === undefined || first === undefined || first[1].createRevision !== mine) {
        // `next` is not first in the shared queue: release only; the first waiter's replica is woken by its watch.
        attempted = { key: entry!.holder!, etcdLease: holder.etcdLease, handedOver: false };
        return this.removeHolder(resource, entry, () => {
          this.leases.giveBack(holder.etcdLease, oldTtl);
          return { released: true };
        });
      }
      // The next holder keeps the releaser's etcd lease when the ttls round alike: no lease to take.
      const sameTtl = etcdTtlSeconds(next.ttlMs) === oldTtl;
      attempted = { key: entry!.holder!, etcdLease: holder.etcdLease, handedOver: true };
      return this.handOverWrite(resource, entry, holder, next, mine, sameTtl, now);
    });
  }

  private async handOverWrite(
    resource: string,
    entry: MirroredResource | undefined,
    holder: HolderValue,
    next: LeaseGrant,
    mine: bigint,
    sameTtl: boolean,
    now: number,
  ): Promise<Decision<HandOverOutcome>> {
    const taken = sameTtl ? { id: holder.etcdLease, renewed: this.leases.renewUnlessFresh(holder.etcdLease) } : await this.leases.take(etcdTtlSeconds(next.ttlMs));
    const { id: etcdLease, renewed } = taken;
    const lease = this.newLease(resource, next, now, this.nextToken(resource, entry));
    renewed.catch(() => {});
    return {
      write: {
        compare: [...this.holderCompares(resource, entry), this.counterCompare(resource, entry), cmp(this.layout.waiter(resource, next.leaseIdHash), Compare_CompareTarget.CREATE, mine)],
        success: [this.putHolder({ lease, etcdLease }), this.putCounter(lease), this.deleteKey(this.layout.waiter(resource, next.leaseIdHash))],
        answer: async (response) => {
          if (!response.succeeded) {
            if (!sameTtl) this.leases.giveBack(etcdLease, etcdTtlSeconds(next.ttlMs));
            return "retry";
          }
          if (!sameTtl) this.leases.giveBack(holder.etcdLease, etcdTtlSeconds(holder.lease.ttlMs));
          return this.handedOver(resource, next, lease, renewed, response.header?.revision ?? 0n);
        },
      },
    };
  }

  /**
   * A hand-over that landed at `revision`: `next` holds the lease once its
   * etcd lease is confirmed renewed. Otherwise only the release stands: the
   * grant is withdrawn, and `next` stays known as joined (its next try finds
   * its key gone, see acquire).
   */
  private async handedOver(resource: string, next: LeaseGrant, lease: LeaseRecord, renewed: Promise<bigint>, revision: bigint): Promise<HandOverOutcome> {
    if ((await this.withdrawnUnlessConfirmed(resource, renewed, revision)) !== undefined) return { released: true };
    this.forgetJoined(resource, next.leaseIdHash);
    return { released: true, granted: lease };
  }

  reclaimIfExpired(resource: string): Promise<ResourceState> {
    return this.decide<ResourceState>(resource, (entry, now) => {
      const holder = this.holderOf(resource, entry);
      if (typeof holder !== "object" || holder.lease.expiresAt > now) return { done: this.stateOf(resource, entry) };
      return this.removeHolder(resource, entry, (): ResourceState => {
        this.leases.revoke(holder.etcdLease);
        return { kind: "free", resource };
      });
    });
  }

  forceRemove(resource: string): Promise<BlockingState | undefined> {
    let attempted: (Removal & { state: BlockingState }) | undefined;
    return this.decide<BlockingState | undefined>(resource, (entry) => {
      if (this.removalLanded(entry, attempted)) return { done: attempted!.state };
      const state = this.stateOf(resource, entry);
      if (state.kind === "free") return { done: undefined };
      const holder = this.holderOf(resource, entry);
      attempted = { key: entry!.holder!, etcdLease: typeof holder === "object" ? holder.etcdLease : undefined, state };
      return this.removeHolder(resource, entry, () => {
        if (typeof holder === "object") this.leases.revoke(holder.etcdLease);
        return state;
      });
    });
  }

  /**
   * A grant stands only once its etcd lease is renewed to its full ttl (the
   * key must outlive expires_at). If that renewal fails, the grant written at
   * `revision` is withdrawn and the caller told UNAVAILABLE: nobody holds it.
   */
  private async confirmGrant(resource: string, renewed: Promise<bigint>, revision: bigint): Promise<void> {
    const why = await this.withdrawnUnlessConfirmed(resource, renewed, revision);
    if (why !== undefined) throw new StoreUnavailableError(`etcd: the grant of "${resource}" could not be confirmed (${why}); it was withdrawn`);
  }

  /** Undefined once `renewed` confirms the grant's etcd lease; else the grant written at `revision` is withdrawn, and why. */
  private async withdrawnUnlessConfirmed(resource: string, renewed: Promise<bigint>, revision: bigint): Promise<string | undefined> {
    let why: string;
    try {
      if ((await renewed) > 0n) return undefined;
      why = "etcd no longer has its lease";
    } catch (err) {
      why = (err as Error).message;
    }
    await this.withdraw(resource, revision);
    return why;
  }

  /** Takes back a grant nobody was told of: the holder key written at `revision`, if it is still that one. */
  private async withdraw(resource: string, revision: bigint): Promise<void> {
    const response = await this.client
      .txn({ ...this.deleteHolderAt(resource, { modRevision: revision }), failure: [] }, { timeoutMs: CALL_TIMEOUT_MS })
      .catch((err: Error) => {
        this.warn(`etcd: withdrawing a grant of "${resource}" failed (${err.message}); it ends at its expires_at, or with its etcd lease`);
        return undefined;
      });
    this.wrote(resource, response?.header?.revision);
  }

  /**
   * Whether the holder version an earlier attempt meant to delete is gone:
   * its answer was lost (or its compare failed because someone removed the
   * same version). Deciding again would find no holder and could not tell its
   * own delete from anyone's; the mirror keeps the version the last delete
   * removed. The version's etcd lease is revoked then (it holds no key).
   */
  private removalLanded(entry: MirroredResource | undefined, attempted: Removal | undefined): boolean {
    if (attempted === undefined || entry?.removedHolder !== attempted.key) return false;
    if (attempted.etcdLease !== undefined) this.leases.revoke(attempted.etcdLease);
    return true;
  }

  /** Deletes the holder key if it is as the mirror saw it; `removed` runs once etcd did. */
  private removeHolder<T>(resource: string, entry: MirroredResource | undefined, removed: () => T): Decision<T> {
    return {
      write: {
        ...this.deleteHolderAt(resource, entry?.holder),
        answer: (response) => (response.succeeded ? removed() : "retry"),
      },
    };
  }

  /** Deletes the holder key only if it is still the version `seen` (same mod revision; absent if undefined). */
  private deleteHolderAt(resource: string, seen: Pick<MirroredKey, "modRevision"> | undefined): Pick<Write<never>, "compare" | "success"> {
    const key = this.layout.holder(resource);
    return { compare: [revisionCompare(key, seen)], success: [this.deleteKey(key)] };
  }

  watch(onChange: (resource: string | undefined) => void): () => void {
    this.listener = onChange;
    return () => {
      if (this.listener === onChange) this.listener = undefined;
    };
  }

  /** A linearizable read needs a leader and a quorum: without them, the store cannot be written either. */
  async probeWritable(): Promise<void> {
    if (this.mirror.lagging !== undefined) throw new StoreUnavailableError(`etcd: not following ${this.layout.prefix}: ${this.mirror.lagging}`);
    await this.currentRevision();
  }

  /**
   * Always deletes, even when no join was recorded: a join whose answer was
   * lost may have landed. A delete that fails is tried again until it is
   * done (or the session ends, and the key with it): a place left behind
   * would hold up everyone queued after it.
   */
  async leaveQueue(resource: string, leaseIdHash: string): Promise<void> {
    this.forgetJoined(resource, leaseIdHash);
    const key = this.layout.waiter(resource, leaseIdHash);
    for (let delayMs = 250; ; delayMs = Math.min(2 * delayMs, 2_000)) {
      try {
        const response = await this.client.deleteRange({ key }, { timeoutMs: CALL_TIMEOUT_MS });
        this.wrote(resource, response.header?.revision);
        return;
      } catch (err) {
        if (this.closed) return;
        this.warn(`etcd: leaving the queue of "${resource}" failed (${(err as Error).message}); trying again`);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  queuedCount(resource: string): number {
    return this.mirror.get(resource)?.waiters.size ?? 0;
  }

  async findLease(leaseIdHash: string): Promise<string | undefined> {
    const known = this.holders.get(leaseIdHash);
    if (known !== undefined) return known;
    // Granted through another replica a moment ago: wait for this one's copy to have it.
    await this.mirror.reach(await this.currentRevision(), 2_000);
    return this.holders.get(leaseIdHash);
  }

  // ---- deciding and writing ----

  /**
   * Decides on the mirror and writes with compares, until etcd accepts or
   * the decision needs no write. A refused write waits for the mirror to
   * reach etcd's revision and decides again; a write whose answer was lost
   * is decided again on a fresh copy (decisions recognise their own earlier
   * success).
   */
  private async decide<T>(
    resource: string,
    decision: (entry: MirroredResource | undefined, now: number) => Decision<T> | Promise<Decision<T>>,
  ): Promise<T> {
    let reason = "";
    const deadline = performance.now() + DECIDE_DEADLINE_MS;
    for (let attempt = 0; attempt < MAX_ATTEMPTS && performance.now() < deadline; attempt++) {
      await this.caughtUp(resource);
      const decided = await decision(this.mirror.get(resource), this.clock.now());
      if ("done" in decided) return decided.done;
      const { write } = decided;
      let response: TxnResponse;
      try {
        response = await this.client.txn(
          { compare: write.compare, success: write.success, failure: write.failure ?? [] },
          { timeoutMs: CALL_TIMEOUT_MS },
        );
      } catch (err) {
        // The write may or may not have been applied: look again with everything up to now.
        reason = (err as Error).message;
        if ((err as { code?: number }).code === 5 /* NOT_FOUND: requested lease not found */ && write.leaseGone) {
          write.leaseGone();
          continue;
        }
        if (isRefusedRequest(err)) throw new StoreFailureError(`etcd refused a write for "${resource}": ${reason}`);
        await this.mirror.reach(await this.currentRevision(), CALL_TIMEOUT_MS);
        continue;
      }
      this.wrote(resource, response.header?.revision);
      const answer = await write.answer(response);
      if (answer !== "retry") return answer;
      reason = "the resource changed meanwhile";
    }
    throw new StoreUnavailableError(`etcd: could not write "${resource}" (${reason || "out of attempts"})`);
  }

  private async joinWrite(resource: string, leaseIdHash: string, outcome: () => AcquireOutcome): Promise<Write<AcquireOutcome>> {
    const session = await this.leases.sessionLease();
    const key = this.layout.waiter(resource, leaseIdHash);
    return {
      compare: [],
      success: [{ requestPut: { key, value: Buffer.alloc(0), lease: session, prevKv: false, ignoreValue: false, ignoreLease: false } }],
      answer: (response) => {
        // The create revision when the put made the key; a key that was already there is corrected by the next decision.
        this.rememberJoined(resource, leaseIdHash, response.header?.revision ?? 0n);
        return outcome();
      },
    };
  }

  /** Whether a waiter of this replica still has its key in the resource's queue. */
  private joinedWaiterKept(resource: string, entry: MirroredResource | undefined): boolean {
    for (const hash of this.joined.get(resource)?.keys() ?? []) if (entry?.waiters.has(hash)) return true;
    return false;
  }

  private rememberJoined(resource: string, leaseIdHash: string, createRevision: bigint): bigint {
    let mine = this.joined.get(resource);
    if (!mine) this.joined.set(resource, (mine = new Map()));
    mine.set(leaseIdHash, createRevision);
    return createRevision;
  }

  /** The session lease was lost, and its waiters' keys with it: each joins again (at the back) when its resource is next looked at. */
  private rejoinAll(): void {
    for (const resource of this.joined.keys()) this.listener?.(resource);
  }

  private forgetJoined(resource: string, leaseIdHash: string): boolean {
    const waiters = this.joined.get(resource);
    const had = waiters?.delete(leaseIdHash) ?? false;
    if (waiters?.size === 0) this.joined.delete(resource);
    return had;
  }

  private wrote(resource: string, revision: bigint | undefined): void {
    if (revision === undefined) return;
    if (revision > this.lastWrite) this.lastWrite = revision;
    // Kept only until the mirror has it (see caughtUp).
    if (revision > this.mirror.revision) this.lastWriteOf.set(resource, revision);
    if (this.lastWriteOf.size > 1024) {
      for (const [name, written] of this.lastWriteOf) if (written <= this.mirror.revision) this.lastWriteOf.delete(name);
    }
  }

  /**
   * Waits until the mirror has this replica's own writes (to `resource`, or
   * all of them), so nobody reads what it wrote as not yet done. Per
   * resource, so that one resource's operation never waits for the watch to
   * deliver another's.
   */
  private async caughtUp(resource?: string): Promise<void> {
    // Not loaded yet (open() waited for the first listing; later ones go on in the background), or the
    // watch broke on every member (no leader, no quorum): fail now rather than queue behind timeouts.
    void this.mirror.start();
    if (this.mirror.lagging !== undefined) throw new StoreUnavailableError(`etcd: this replica is not following ${this.layout.prefix}: ${this.mirror.lagging}`);
    if (resource === undefined) return this.mirror.reach(this.lastWrite);
    const written = this.lastWriteOf.get(resource);
    if (written === undefined) return;
    await this.mirror.reach(written);
    if (this.lastWriteOf.get(resource) === written) this.lastWriteOf.delete(resource);
  }

  /** etcd's current revision, by a linearizable read (it needs a leader and a quorum). */
  private async currentRevision(): Promise<bigint> {
    const response = await this.call("reading the current revision", () =>
      this.client.range({ key: Buffer.from(`${this.layout.prefix}revision-probe`), countOnly: true }, { timeoutMs: CALL_TIMEOUT_MS }),
    );
    return response.header?.revision ?? 0n;
  }

  private async call<T>(action: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw new StoreUnavailableError(`etcd: ${action} failed: ${(err as Error).message}`);
    }
  }

  private mirrorChanged(resource: string | undefined): void {
    if (resource === undefined) {
      this.holders.clear();
      this.holderHashOf.clear();
      for (const name of this.mirror.names()) this.indexHolder(name);
    } else {
      this.indexHolder(resource);
    }
    this.listener?.(resource);
  }

  private indexHolder(resource: string): void {
    const previous = this.holderHashOf.get(resource);
    const holder = this.holderOf(resource, this.mirror.get(resource));
    const hash = typeof holder === "object" ? holder.lease.leaseIdHash : undefined;
    if (previous === hash) return;
    if (previous !== undefined && this.holders.get(previous) === resource) this.holders.delete(previous);
    if (hash === undefined) this.holderHashOf.delete(resource);
    else {
      this.holderHashOf.set(resource, hash);
      this.holders.set(hash, resource);
    }
  }

  // ---- reading the mirror ----

  /** Decoded once per version of the key (the mirror makes a new MirroredKey for each), not once per look. */
  private holderOf(resource: string, entry: MirroredResource | undefined): HolderValue | string | undefined {
    const key = entry?.holder;
    if (!key) return undefined;
    let decoded = this.decodedHolders.get(key);
    if (decoded === undefined) this.decodedHolders.set(key, (decoded = decodeHolder(resource, key.value)));
    return decoded;
  }

  private stateOf(resource: string, entry: MirroredResource | undefined): ResourceState {
    const holder = this.holderOf(resource, entry);
    if (holder === undefined) return { kind: "free", resource };
    if (typeof holder === "object") return { kind: "held", resource, lease: holder.lease };
    // Written by something else: held by nobody we know until it is removed (ForceRelease) or its etcd lease ends.
    const now = this.clock.now();
    return { kind: "unreadable", resource, modifiedAt: now, blockedUntil: now + 60_000, reason: `the holder key's value: ${holder}` };
  }

  private nextToken(resource: string, entry: MirroredResource | undefined): number {
    const counted = entry?.counter ? decodeCounter(entry.counter.value) : 0;
    if (counted === undefined) throw new StoreFailureError("etcd: a fencing counter key holds something other than a token");
    // The holder's token counts too: the counter is written with it, but a holder written by hand may be ahead.
    const holder = this.holderOf(resource, entry);
    const held = typeof holder === "object" ? holder.lease.fencingToken : 0;
    return Math.max(counted, held, this.tokenFloor) + 1;
  }

  private newLease(resource: string, grant: LeaseGrant, now: number, fencingToken: number): LeaseRecord {
    return {
      resource,
      holder: grant.holder,
      fencingToken,
      acquiredAt: now,
      expiresAt: now + grant.ttlMs,
      ttlMs: grant.ttlMs,
      metadata: grant.metadata,
      leaseIdHash: grant.leaseIdHash,
      pid: process.pid,
      hostname: this.host,
    };
  }

  // ---- compares and operations ----

  private holderCompares(resource: string, entry: MirroredResource | undefined): Compare[] {
    return [revisionCompare(this.layout.holder(resource), entry?.holder)];
  }

  private counterCompare(resource: string, entry: MirroredResource | undefined): Compare {
    return revisionCompare(this.layout.counter(resource), entry?.counter);
  }

  private putHolder(value: HolderValue): RequestOp {
    return { requestPut: { key: this.layout.holder(value.lease.resource), value: encodeHolder(value), lease: value.etcdLease, prevKv: false, ignoreValue: false, ignoreLease: false } };
  }

  private putCounter(lease: LeaseRecord): RequestOp {
    return { requestPut: { key: this.layout.counter(lease.resource), value: Buffer.from(String(lease.fencingToken)), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } };
  }

  private deleteKey(key: Buffer): RequestOp {
    return { requestDeleteRange: { key, rangeEnd: Buffer.alloc(0), prevKv: false } };
  }
}

/** The key is as the mirror saw it: same mod revision, or still absent. */
function revisionCompare(key: Buffer, seen: Pick<MirroredKey, "modRevision"> | undefined): Compare {
  return seen ? cmp(key, Compare_CompareTarget.MOD, seen.modRevision) : cmp(key, Compare_CompareTarget.VERSION, 0n);
}

function cmp(key: Buffer, target: Compare_CompareTarget, value: bigint): Compare {
  const compare: Compare = { result: Compare_CompareResult.EQUAL, target, key, rangeEnd: Buffer.alloc(0) };
  if (target === Compare_CompareTarget.MOD) compare.modRevision = value;
  else if (target === Compare_CompareTarget.CREATE) compare.createRevision = value;
  else compare.version = value;
  return compare;
}

/** The waiter whose turn it is: the oldest key (lowest create revision). */
function firstWaiter(entry: MirroredResource | undefined): [string, MirroredKey] | undefined {
  let first: [string, MirroredKey] | undefined;
  for (const waiter of entry?.waiters ?? []) if (first === undefined || waiter[1].createRevision < first[1].createRevision) first = waiter;
  return first;
}

function isLive(state: BlockingState, now: number): boolean {
  return state.kind === "held" ? state.lease.expiresAt > now : state.blockedUntil > now;
}

/** etcd refused the request itself (too large, a lease that does not exist): trying again changes nothing. */
function isRefusedRequest(err: unknown): boolean {
  const code = (err as { code?: number }).code;
  return code === 3 /* INVALID_ARGUMENT */ || code === 9 /* FAILED_PRECONDITION */ || code === 8 /* RESOURCE_EXHAUSTED */;
}
