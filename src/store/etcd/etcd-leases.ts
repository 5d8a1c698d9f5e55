import { StoreUnavailableError } from "../../core/errors.ts";
import type { EtcdClient } from "./etcd-client.ts";

// The etcd leases one replica works with:
// - renewals, all on one LeaseKeepAlive stream (a renewal costs etcd no Raft
//   round, unlike a write);
// - a pool of spare leases per ttl, so a grant is one Txn instead of a
//   LeaseGrant and a Txn (a released lease goes back to the pool instead of
//   being revoked and granted again);
// - the replica's session lease, which its waiters' queue keys are bound to:
//   when the replica dies they vanish within the session's ttl.

/** etcd refuses ttls under its minimum (1.5 × the election timeout, rounded up: 2 s by default). */
export const MIN_ETCD_TTL_SECONDS = 2;
const SESSION_TTL_SECONDS = 3;
const RENEWAL_ANSWER_TIMEOUT_MS = 2_000;
const POOL_PER_TTL = 16;
const POOL_REFRESH_EVERY_MS = 500;

/**
 * The etcd lease ttl for a lease of `ttlMs`: whole seconds, at least etcd's
 * minimum, and a second more than the lease, so the key outlives the lease's
 * own expires_at (which is what decides; the etcd lease only removes the key
 * of a holder nobody renews once no replica is left to reclaim it).
 */
export function etcdTtlSeconds(ttlMs: number): number {
  return Math.max(MIN_ETCD_TTL_SECONDS, Math.ceil(ttlMs / 1000) + 1);
}

interface Pooled {
  id: bigint;
  refreshedAt: number;
  /** The renewal last sent, and when. */
  inFlight?: { sentAt: number; answer: Promise<bigint> };
}

/** A lease for a grant, and its renewal to (at least) the full ttl: the ttl left (≤ 0: gone). */
export interface TakenLease {
  id: bigint;
  renewed: Promise<bigint>;
}

/** A spare lease renewed this recently needs no renewal before use: its ttl is a second longer than the lease's. */
const FRESH_FOR_MS = 500;

/** Confirmations older than this are forgotten (a lease renewed elsewhere, or no longer used, is renewed before reuse). */
const CONFIRMATIONS_KEPT_MS = 10_000;

export class EtcdLeases {
  private readonly pools = new Map<number, Pooled[]>();
  /**
   * Lease id → when the last renewal etcd confirmed was sent from here
   * (performance.now()): a lease taken for a grant or handed over this soon
   * after needs no renewal of its own, so an acquire+release cycle costs no
   * keepalive (the lease goes back to the pool still fresh).
   */
  private readonly confirmedAt = new Map<bigint, number>();
  private confirmationsPrunedAt = performance.now();
  /** Renewals awaiting their answer, per lease id, oldest first. */
  private readonly pending = new Map<bigint, Array<(ttl: bigint) => void>>();
  private readonly outbox: bigint[] = [];
  private wakeSender: (() => void) | undefined;
  /** Counts the id streams made: only the newest takes ids from the outbox. */
  private idStreams = 0;
  private readonly abort = new AbortController();
  private session: { id: bigint; ready: Promise<bigint> } | undefined;
  private sessionRenewedAt = 0;
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly client: EtcdClient,
    private readonly warn: (message: string) => void,
    /** The session lease was lost (its waiters' keys are gone): a new one is in use from now on. */
    private readonly onSessionLost: () => void,
  ) {
    this.abort.signal.addEventListener("abort", () => this.wake(), { once: true });
    void this.runRenewals();
    this.timer = setInterval(() => this.tick(), POOL_REFRESH_EVERY_MS);
    this.timer.unref?.();
  }

  close(): void {
    this.abort.abort(new Error("the etcd store is closed"));
    clearInterval(this.timer);
    const spare = [...this.pools.values()].flat().map((pooled) => pooled.id);
    if (this.session) spare.push(this.session.id);
    this.pools.clear();
    for (const id of spare) void this.client.leaseRevoke(id, { timeoutMs: 1_000 }).catch(() => {});
  }

  /**
   * A lease of `ttlSeconds` for a grant: a spare one, or a new one, with its
   * renewal to await alongside the write that uses it. None is sent when one
   * sent under half a second ago is confirmed or still due (its ttl is a
   * second longer than the lease's, so ttl + 0.5 s is left).
   */
  async take(ttlSeconds: number): Promise<TakenLease> {
    const pooled = this.pools.get(ttlSeconds)?.pop();
    if (pooled) {
      if (pooled.inFlight && performance.now() - pooled.inFlight.sentAt < FRESH_FOR_MS && !this.isFresh(pooled.id)) {
        return { id: pooled.id, renewed: pooled.inFlight.answer };
      }
      return { id: pooled.id, renewed: this.renewUnlessFresh(pooled.id) };
    }
    const sentAt = performance.now();
    const granted = await this.client.leaseGrant(ttlSeconds, { timeoutMs: 3_000 }).catch((err: Error) => {
      throw new StoreUnavailableError(`etcd: LeaseGrant failed: ${err.message}`);
    });
    if (granted.error) throw new StoreUnavailableError(`etcd: LeaseGrant failed: ${granted.error}`);
    this.confirmedAt.set(granted.ID, sentAt);
    return { id: granted.ID, renewed: Promise.resolve(granted.TTL) };
  }

  /**
   * A lease that holds no key any more: kept as a spare, or revoked. A spare
   * renewed from here within a third of its ttl is next renewed on the
   * pool's schedule, not at once.
   */
  giveBack(id: bigint, ttlSeconds: number): void {
    let pool = this.pools.get(ttlSeconds);
    if (!pool) this.pools.set(ttlSeconds, (pool = []));
    if (pool.length < POOL_PER_TTL) {
      const confirmed = this.confirmedAt.get(id);
      const fresh = confirmed !== undefined && performance.now() - confirmed < (ttlSeconds * 1000) / 3;
      const pooled: Pooled = { id, refreshedAt: fresh ? confirmed : performance.now() };
      pool.push(pooled);
      if (!fresh) this.refresh(pool, pooled);
      return;
    }
    this.revoke(id);
  }

  /** Revokes in the background: it ends a lease nobody holds, so nobody waits for it. */
  revoke(id: bigint): void {
    this.confirmedAt.delete(id);
    void this.client.leaseRevoke(id, { timeoutMs: 3_000 }).catch(() => {});
  }

  /** Renews `id` unless etcd confirmed a renewal sent from here under half a second ago (its ttl has a second to spare). */
  renewUnlessFresh(id: bigint): Promise<bigint> {
    return this.isFresh(id) ? Promise.resolve(1n) : this.renew(id);
  }

  private isFresh(id: bigint): boolean {
    const confirmed = this.confirmedAt.get(id);
    return confirmed !== undefined && performance.now() - confirmed < FRESH_FOR_MS;
  }

  /** Renews an etcd lease to its full ttl; resolves with the ttl left (≤ 0: the lease is gone). */
  renew(id: bigint): Promise<bigint> {
    const sentAt = performance.now();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new StoreUnavailableError(`etcd: a lease renewal got no answer within ${RENEWAL_ANSWER_TIMEOUT_MS} ms`));
      }, RENEWAL_ANSWER_TIMEOUT_MS);
      this.send(id, (ttl) => {
        clearTimeout(timer);
        if (ttl <= 0n) this.confirmedAt.delete(id);
        else if (sentAt > (this.confirmedAt.get(id) ?? 0)) this.confirmedAt.set(id, sentAt);
        resolve(ttl);
      });
    });
  }

  /** The replica's session lease (for waiter keys). */
  sessionLease(): Promise<bigint> {
    if (!this.session) {
      const session = { id: 0n, ready: undefined as unknown as Promise<bigint> };
      session.ready = (async () => {
        const granted = await this.client.leaseGrant(SESSION_TTL_SECONDS, { timeoutMs: 3_000 });
        if (granted.error) throw new Error(granted.error);
        this.sessionRenewedAt = performance.now();
        session.id = granted.ID;
        return granted.ID;
      })().catch((err: Error) => {
        if (this.session === session) this.session = undefined;
        throw new StoreUnavailableError(`etcd: granting this replica's session lease failed: ${err.message}`);
      });
      this.session = session;
    }
    return this.session.ready;
  }

  private tick(): void {
    const now = performance.now();
    if (now - this.confirmationsPrunedAt > CONFIRMATIONS_KEPT_MS) {
      this.confirmationsPrunedAt = now;
      for (const [id, confirmed] of this.confirmedAt) if (now - confirmed > CONFIRMATIONS_KEPT_MS) this.confirmedAt.delete(id);
    }
    for (const [ttlSeconds, pool] of this.pools) {
      for (const pooled of pool) {
        if (now - pooled.refreshedAt < (ttlSeconds * 1000) / 3) continue;
        pooled.refreshedAt = now;
        this.refresh(pool, pooled);
      }
    }
    const session = this.session;
    if (session && session.id !== 0n) {
      if (now - this.sessionRenewedAt > SESSION_TTL_SECONDS * 1000) return this.loseSession(session, "no renewal was answered within its ttl");
      this.send(session.id, (ttl) => {
        if (ttl > 0n) this.sessionRenewedAt = performance.now();
        else this.loseSession(session, "etcd says it expired");
      });
    }
  }

  /** Renews a spare; one that etcd no longer has leaves the pool. */
  private refresh(pool: Pooled[], pooled: Pooled): void {
    const sentAt = performance.now();
    const answer = this.renew(pooled.id);
    pooled.inFlight = { sentAt, answer };
    answer.then(
      (ttl) => {
        if (ttl > 0n) return;
        const at = pool.indexOf(pooled);
        if (at >= 0) pool.splice(at, 1);
      },
      () => {},
    );
  }

  private loseSession(session: NonNullable<EtcdLeases["session"]>, why: string): void {
    if (this.session !== session) return;
    this.session = undefined;
    this.warn(`etcd: this replica's session lease was lost (${why}); its waiters join the queues again`);
    this.onSessionLost();
  }

  private send(id: bigint, answer: (ttl: bigint) => void): void {
    let waiting = this.pending.get(id);
    if (!waiting) this.pending.set(id, (waiting = []));
    waiting.push(answer);
    this.outbox.push(id);
    this.wake();
  }

  private wake(): void {
    const wake = this.wakeSender;
    this.wakeSender = undefined;
    wake?.();
  }

  /**
   * One renewal stream for the replica's life; reopened (by the client) on
   * another member when it breaks, and here when the client gives up. Each
   * leaseKeepAlive gets an id stream of its own: the client closes the one it
   * was given when it ends, and a closed one would never send again.
   */
  private async runRenewals(): Promise<void> {
    while (!this.abort.signal.aborted) {
      try {
        for await (const answer of this.client.leaseKeepAlive(this.idStream(), { signal: this.abort.signal, answerTimeoutMs: 1_000 })) {
          // Everyone who asked is answered: after a failover, renewals sent on
          // the old stream get no answer of their own.
          const waiting = this.pending.get(answer.ID);
          this.pending.delete(answer.ID);
          for (const resolve of waiting ?? []) resolve(answer.TTL);
        }
      } catch (err) {
        if (this.abort.signal.aborted) return;
        this.warn(`etcd: the lease renewal stream broke (${(err as Error).message}); reopening`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  }

  /**
   * The ids to renew, from the outbox, until a newer id stream replaces this
   * one. An id taken but not sent (the consumer stopped right after taking
   * it) goes back to the front of the outbox.
   */
  private async *idStream(): AsyncGenerator<bigint> {
    const generation = ++this.idStreams;
    // The stream this one replaces may be waiting for an id: it ends without taking one.
    this.wake();
    while (!this.abort.signal.aborted && generation === this.idStreams) {
      const id = this.outbox.shift();
      if (id === undefined) {
        await new Promise<void>((resolve) => (this.wakeSender = resolve));
        continue;
      }
      let sent = false;
      try {
        yield id;
        sent = true;
      } finally {
        if (!sent) this.outbox.unshift(id);
      }
    }
  }
}
