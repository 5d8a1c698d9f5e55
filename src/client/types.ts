import type { ChannelCredentials } from "@grpc/grpc-js";

export interface LockClientOptions {
  /**
   * host:port of the service, or of several replicas separated by commas
   * ("a:50051,b:50051"): calls go to the first and move to the next when it
   * is unavailable. Default: MCP_LOCKD_ADDRESS, else 127.0.0.1:50051.
   */
  address?: string;
  /** Default: insecure (the service listens on loopback unless told otherwise). */
  credentials?: ChannelCredentials;
  /** Backoff of the KeepAlive stream's reconnection (exponential, with jitter). */
  reconnect?: ReconnectOptions;
}

export interface ReconnectOptions {
  /** First delay after the stream breaks. Default 100 ms. */
  initialDelayMs?: number;
  /** Ceiling of the doubling delay. Default 2000 ms. */
  maxDelayMs?: number;
}

export interface AcquireOptions {
  /** Shown to others. Default `${hostname}:${pid}`. */
  holder?: string;
  /** Lease time to live in ms (1 s to 1 h). Default: the service's, 30 s. */
  ttl?: number;
  /** How long to wait in the FIFO queue, in ms. Undefined or 0: try once. Infinity: the service's maximum (24 h). */
  wait?: number;
  /** Labels stored with the lease and shown in listings. */
  metadata?: Record<string, string>;
  /** Aborting while waiting cancels the call and leaves the queue; acquire() then rejects with signal.reason. */
  signal?: AbortSignal;
}

/** A held resource as listed by the service. Lease ids are never listed. */
export interface LockInfo {
  resource: string;
  holder: string;
  /** 0n only for an unreadable lease file. */
  fencingToken: bigint;
  /** On the service's clock. */
  acquiredAt: Date;
  /** On the service's clock. */
  expiresAt: Date;
  /** ms */
  ttl: number;
  /** Callers waiting for the resource in the service's queue. */
  waiters: number;
  /** "held", or "unreadable" for a lease file that cannot be parsed. */
  state: string;
  metadata: Record<string, string>;
}

export interface Renewal {
  /** The renewed expiry on this machine's clock, counted from when the request was sent. */
  expiresAt: Date;
  /** ms */
  ttl: number;
}
