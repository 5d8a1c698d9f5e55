import type { LockManager } from "../core/lock-manager.ts";
import { LeaseNotFoundError } from "../core/errors.ts";
import type {
  AcquireRequest,
  AcquireResponse,
  KeepAliveRequest,
  KeepAliveResponse,
  ListLocksRequest,
  ListLocksResponse,
  LockServiceServer,
  ReleaseRequest,
  ReleaseResponse,
} from "../gen/mcplockd/v1/lock.ts";
import { bidi, unary, type CallContext, type CallGate } from "./call-adapter.ts";
import { mapUnordered } from "./map-unordered.ts";
import { durationToMs, msToDuration, msToTimestamp, toListedLease, toProtoLease } from "./convert.ts";
import { toServiceError } from "./status-map.ts";

/** Renewals one KeepAlive stream may have in progress at once; more wait in the stream (backpressure). */
const KEEPALIVE_IN_FLIGHT_PER_STREAM = 64;

/**
 * mcplockd.v1.LockService: a thin adapter over the LockManager. Calls are
 * refused while `gate` says so (the service is still loading lease files).
 */
export function lockService(manager: LockManager, shutdown: AbortSignal, gate?: CallGate): LockServiceServer {
  async function acquire(request: AcquireRequest, { signal }: CallContext): Promise<AcquireResponse> {
    const granted = await manager.acquire(
      {
        resource: request.resource,
        holder: request.holder,
        ttlMs: durationToMs(request.ttl, "ttl"),
        waitMs: durationToMs(request.waitTimeout, "wait_timeout"),
        metadata: request.metadata,
      },
      signal,
    );
    if (signal.aborted) {
      // The caller left as the grant was made: nobody will ever use it.
      await manager.release(granted.leaseId).catch(() => {});
      throw signal.reason;
    }
    return { lease: toProtoLease(granted.lease, granted.leaseId) };
  }

  async function release(request: ReleaseRequest): Promise<ReleaseResponse> {
    await manager.release(request.leaseId);
    return { released: true };
  }

  // Renewals on one stream run side by side and are answered as they finish
  // (each answer names its lease): one slow resource must not hold up the
  // other leases a client renews on the same stream.
  function keepAlive(requests: AsyncIterable<KeepAliveRequest>): AsyncIterable<KeepAliveResponse> {
    return mapUnordered(requests, KEEPALIVE_IN_FLIGHT_PER_STREAM, renew);
  }

  // Every request is answered in-band and never ends the stream: one lease's
  // store failure (EACCES, EIO, a stray file at its guard...) is that lease's
  // answer, and the other leases on the stream go on being renewed.
  async function renew({ leaseId }: KeepAliveRequest): Promise<KeepAliveResponse> {
    try {
      const lease = await manager.renew(leaseId);
      return { leaseId, expiresAt: msToTimestamp(lease.expiresAt), ttl: msToDuration(lease.ttlMs), expired: false, error: undefined };
    } catch (err) {
      if (err instanceof LeaseNotFoundError) return { leaseId, expiresAt: undefined, ttl: undefined, expired: true, error: undefined };
      const { code, details } = toServiceError(err);
      return { leaseId, expiresAt: undefined, ttl: undefined, expired: false, error: { code: code!, message: details ?? "" } };
    }
  }

  async function listLocks(request: ListLocksRequest): Promise<ListLocksResponse> {
    const locks = await manager.list(request.resourcePrefix);
    return { locks: locks.map(({ state, waiters }) => toListedLease(state, waiters)) };
  }

  return {
    acquire: unary(acquire, shutdown, gate),
    release: unary(release, shutdown, gate),
    keepAlive: bidi(keepAlive, shutdown, gate),
    listLocks: unary(listLocks, shutdown, gate),
  };
}
