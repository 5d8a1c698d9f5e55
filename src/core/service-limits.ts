// Limits on what all callers together may hold of the service, so that one
// client cannot exhaust it for the others (serve --max-* flags). Over a
// limit a call gets RESOURCE_EXHAUSTED naming it; nothing else degrades.

export interface ServiceLimits {
  /** Callers waiting (not try-once) for one resource. */
  maxWaitersPerResource: number;
  /** Callers waiting for any resource. */
  maxWaiters: number;
  /** KeepAlive streams open at once. */
  maxKeepAliveStreams: number;
  /** Concurrent HTTP/2 streams (calls) on one connection; more are refused by HTTP/2 itself. */
  maxStreamsPerConnection: number;
  /** gRPC connections open at once; more are closed as they arrive. */
  maxConnections: number;
  /** Leases held plus waits pending of one principal (with --auth-file) or one connection (without). */
  maxLeasesPerOwner: number;
}

/**
 * About 25 KB of memory per waiting call was measured (a waiter is mostly
 * its gRPC call), so the defaults bound waiters to some 250 MB.
 */
export const DEFAULT_SERVICE_LIMITS: ServiceLimits = {
  maxWaitersPerResource: 1_000,
  maxWaiters: 10_000,
  maxKeepAliveStreams: 10_000,
  maxStreamsPerConnection: 1_000,
  maxConnections: 10_000,
  // Above the 10,000 leases one client keeps in the benchmark (docs/performance.md).
  maxLeasesPerOwner: 50_000,
};

/**
 * The largest request the documented field limits allow is an Acquire with
 * 8 KiB of metadata (a few hundred bytes more with keys, holder and
 * resource): anything over 64 KiB is refused before it is parsed.
 */
export const MAX_REQUEST_BYTES = 64 * 1024;
