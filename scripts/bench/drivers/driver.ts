// The one client interface every system is driven through, so that each
// workload runs the same loop against mcp-lockd, etcd and proper-lockfile.

/** Releases a held lock; resolves when the system has answered the release. */
export type Release = () => Promise<void>;

/** Answers of a renewal stream, by lease key. */
export interface RenewalListener {
  /** `alive` false: the system says the lease is gone. */
  onAnswer(leaseKey: string, alive: boolean): void;
  /** The stream failed or ended; its leases are no longer renewed. */
  onClosed(error: Error | undefined): void;
}

export interface RenewalStream {
  /** Sends one renewal of the lease; its answer comes to the listener. */
  renew(leaseKey: string): void;
  close(): void;
}

export interface Listing {
  entries: number;
  /** From the request to the last byte of the response, before decoding. */
  elapsedMs: number;
}

/** One simulated client: its own connection for a server, nothing shared. */
export interface LockClient {
  /** Takes the free `resource` and releases it (uncontended: W1, W2). */
  acquireRelease(resource: string): Promise<void>;
  /** Waits for `resource`; resolves once granted (W3). */
  acquireWaiting(resource: string): Promise<Release>;
  /** A cycle that also creates and ends a fresh lease (W4). */
  lifecycle(resource: string): Promise<void>;
  /** Takes `resource` under a new lease of `ttlSeconds`; resolves to the key that renews it. Kept in memory only: for mcp-lockd it is a capability. */
  hold(resource: string, ttlSeconds: number): Promise<string>;
  openRenewalStream(listener: RenewalListener): RenewalStream;
  /** Lists the held locks whose names start with `prefix` (W6). */
  list(prefix: string): Promise<Listing>;
  close(): Promise<void>;
}

export interface LockDriver {
  /** A new client, connected and ready. */
  openClient(): Promise<LockClient>;
}

/** A workload that makes no sense for a system (the orchestrator never asks). */
export class NotApplicableError extends Error {
  override name = "NotApplicableError";
}
