import type { LockManager } from "../core/lock-manager.ts";
import { LeaseNotFoundError, LimitReachedError } from "../core/errors.ts";
import { validateLeaseId, validateResource, validateResourcePrefix } from "../core/limits.ts";
import type { AccessPolicy, Action, Principal } from "../auth/access-policy.ts";
import type {
  AcquireRequest,
  AcquireResponse,
  ForceReleaseRequest,
  ForceReleaseResponse,
  KeepAliveRequest,
  KeepAliveResponse,
  ListLocksRequest,
  ListLocksResponse,
  LockServiceServer,
  ReleaseRequest,
  ReleaseResponse,
  LockEvent,
  WatchRequest,
} from "../gen/mcplockd/v1/lock.ts";
import type { handleServerStreamingCall } from "@grpc/grpc-js";
import { bidi, presentedByCall, unary, type CallContext, type CallGate } from "./call-adapter.ts";
import { UndecodableRequest } from "./undecodable-request.ts";
import { mapUnordered } from "./map-unordered.ts";
import { watchHandler } from "./watch-stream.ts";
import { durationToMs, encodeListedLease, msToDuration, msToTimestamp, toProtoLease } from "./convert.ts";
import { preEncoded } from "./pre-encoded.ts";
import { toServiceError } from "./status-map.ts";

/** Renewals one KeepAlive stream may have in progress at once; more wait in the stream (backpressure). */
const KEEPALIVE_IN_FLIGHT_PER_STREAM = 64;

/** Who the caller is when authorization is off: named in force-release logs. */
const ANONYMOUS = "anonymous (no --auth-file)";

export interface LockServiceOptions {
  /** Refuses calls while it says so (the service is still loading lease files). */
  gate?: CallGate;
  /** The current access policy (it may be reloaded), or undefined when authorization is off. */
  access?: () => AccessPolicy | undefined;
  /** KeepAlive streams open at once; more get RESOURCE_EXHAUSTED. Default: no limit. */
  maxKeepAliveStreams?: number;
  /** Events one watcher may have queued (see watch-stream.ts). */
  watchQueueLimit?: number;
}

/**
 * mcplockd.v1.LockService: a thin adapter over the LockManager. With an
 * access policy, every call is authenticated and checked against the
 * principal's grants before the manager sees it.
 */
export function lockService(manager: LockManager, shutdown: AbortSignal, options: LockServiceOptions = {}): LockServiceServer {
  const { gate } = options;
  const maxKeepAliveStreams = options.maxKeepAliveStreams ?? Number.POSITIVE_INFINITY;
  let keepAliveStreams = 0;
  const listing = manager.cachedListing(({ state, waiters }) => encodeListedLease(state, waiters));
  shutdown.addEventListener("abort", () => listing.stop(), { once: true });

  /** The caller's principal and the policy, or undefined for both when authorization is off. */
  function authenticate(context: CallContext): { policy: AccessPolicy; principal: Principal } | undefined {
    const policy = options.access?.();
    return policy && { policy, principal: policy.authenticate(context.presented) };
  }

  /** The caller's principal's name (ANONYMOUS without authorization), once it may do `action` on `resource`. */
  function authorize(context: CallContext, action: Action, resource: string): string | undefined {
    const auth = authenticate(context);
    auth?.policy.require(auth.principal, action, resource);
    return auth?.principal.name;
  }

  /** Release and renewals act on the resource the lease holds: the caller needs "lock" there. */
  async function authorizeLease(context: CallContext, leaseId: string): Promise<void> {
    const auth = authenticate(context);
    if (!auth) return;
    const resource = await manager.resourceOfLease(leaseId);
    if (resource === undefined) throw new LeaseNotFoundError();
    auth.policy.require(auth.principal, "lock", resource);
  }

  async function acquire(request: AcquireRequest, context: CallContext): Promise<AcquireResponse> {
    const principal = authorize(context, "lock", validateResource(request.resource));
    const { signal } = context;
    const granted = await manager.acquire(
      {
        resource: request.resource,
        holder: request.holder,
        ttlMs: durationToMs(request.ttl, "ttl"),
        waitMs: durationToMs(request.waitTimeout, "wait_timeout"),
        metadata: request.metadata,
        // Leases are limited per principal, or per connection without authorization.
        owner: principal === undefined ? `connection ${context.peer}` : `principal "${principal}"`,
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

  async function release(request: ReleaseRequest, context: CallContext): Promise<ReleaseResponse> {
    await authorizeLease(context, validateLeaseId(request.leaseId));
    await manager.release(request.leaseId);
    return { released: true };
  }

  // Renewals on one stream run side by side and are answered as they finish
  // (each answer names its lease): one slow resource must not hold up the
  // other leases a client renews on the same stream.
  async function* keepAlive(requests: AsyncIterable<KeepAliveRequest>, context: CallContext): AsyncIterable<KeepAliveResponse> {
    // Credentials are checked as the stream opens, so a caller without any
    // learns it at once rather than at its first renewal.
    authenticate(context);
    if (keepAliveStreams >= maxKeepAliveStreams) {
      throw new LimitReachedError("max-keepalive-streams", maxKeepAliveStreams, `${keepAliveStreams} KeepAlive streams are open`);
    }
    keepAliveStreams++;
    try {
      yield* mapUnordered(requests, KEEPALIVE_IN_FLIGHT_PER_STREAM, (request) => renew(request, context));
    } finally {
      keepAliveStreams--;
    }
  }

  // Every request is answered in-band and never ends the stream: one lease's
  // store failure (EACCES, EIO, a stray file at its guard...) or refusal
  // (PERMISSION_DENIED) is that lease's answer, and the other leases on the
  // stream go on being renewed. An over-long lease id is malformed input: it
  // ends the stream with INVALID_ARGUMENT rather than being echoed back.
  async function renew({ leaseId }: KeepAliveRequest, context: CallContext): Promise<KeepAliveResponse> {
    validateLeaseId(leaseId);
    try {
      await authorizeLease(context, leaseId);
      const lease = await manager.renew(leaseId);
      return { leaseId, expiresAt: msToTimestamp(lease.expiresAt), ttl: msToDuration(lease.ttlMs), expired: false, error: undefined };
    } catch (err) {
      if (err instanceof LeaseNotFoundError) return { leaseId, expiresAt: undefined, ttl: undefined, expired: true, error: undefined };
      const { code, details } = toServiceError(err);
      return { leaseId, expiresAt: undefined, ttl: undefined, expired: false, error: { code: code!, message: details ?? "" } };
    }
  }

  async function listLocks(request: ListLocksRequest, context: CallContext): Promise<ListLocksResponse> {
    const auth = authenticate(context);
    auth?.policy.requireAny(auth.principal, "read");
    const readable = auth && ((resource: string) => auth.policy.allows(auth.principal, "read", resource));
    // Protobuf bytes assembled from cached entries (a repeated field is its elements' encodings one after another).
    return preEncoded(await listing.answer(validateResourcePrefix(request.resourcePrefix), readable));
  }

  async function forceRelease(request: ForceReleaseRequest, context: CallContext): Promise<ForceReleaseResponse> {
    const by = authorize(context, "admin", validateResource(request.resource)) ?? ANONYMOUS;
    const { removed } = await manager.forceRelease(request.resource, by, request.reason);
    return { released: removed !== undefined, fencingToken: removed?.kind === "held" ? removed.lease.fencingToken : 0 };
  }

  return {
    acquire: unary(acquire, shutdown, gate),
    release: unary(release, shutdown, gate),
    keepAlive: bidi(keepAlive, shutdown, gate),
    listLocks: unary(listLocks, shutdown, gate),
    forceRelease: unary(forceRelease, shutdown, gate),
    watch: authorizedWatch(watchHandler(manager, { shutdown, gate, queueLimit: options.watchQueueLimit })),
  };

  /**
   * With authorization on, a Watch needs "read" on everything its prefix can
   * match: a grant whose resource_prefix the watched prefix starts with.
   * (Events are not filtered one by one: a watcher sees all of its prefix or
   * is refused, naming the prefix.)
   */
  function authorizedWatch(handler: handleServerStreamingCall<WatchRequest, LockEvent>): handleServerStreamingCall<WatchRequest, LockEvent> {
    return (call) => {
      try {
        if (call.request instanceof UndecodableRequest) throw call.request.error();
        const policy = options.access?.();
        if (policy) policy.requirePrefix(policy.authenticate(presentedByCall(call)), "read", call.request.resourcePrefix);
      } catch (err) {
        call.emit("error", toServiceError(err));
        return;
      }
      handler(call);
    };
  }
}
