import type { ChannelCredentials } from "@grpc/grpc-js";
import type { LockEventType } from "../core/lock-events.ts";

export interface LockClientOptions {
  /**
   * host:port of the service, or of several replicas separated by commas
   * ("a:50051,b:50051"): calls go to the first and move to the next when it
   * is unavailable. Default: MCP_LOCKD_ADDRESS, else 127.0.0.1:50051.
   */
  address?: string;
  /** TLS to the service: PEM contents (not paths). `ca` trusts the service's certificate (default: the system's CAs); `cert` and `key` are this client's certificate for mutual TLS. */
  tls?: LockClientTls;
  /** A bearer token, sent as `authorization: Bearer <token>` on every call (services with --auth-file). */
  token?: string;
  /** Explicit channel credentials, instead of `tls`. Default: plaintext (the service listens on loopback unless told otherwise). */
  credentials?: ChannelCredentials;
  /** Backoff of the KeepAlive stream's reconnection (exponential, with jitter). */
  reconnect?: ReconnectOptions;
}

export interface LockClientTls {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
}

export interface ForceReleaseResult {
  /** False when the resource was free. */
  released: boolean;
  /** The token of the lease that was ended; 0n when none was, or its file was unreadable. */
  fencingToken: bigint;
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

/**
 * What LockClient.watch() yields. A watch opens with one "HELD" event per
 * held resource and one "SNAPSHOT_COMPLETE", then the changes in order.
 * Lease ids never appear.
 */
export interface LockEventInfo {
  /** "UNKNOWN" for a type this client does not know (a newer service). */
  type: LockEventType | "UNKNOWN";
  /** "" for SNAPSHOT_COMPLETE. */
  resource: string;
  /** "held", "unreadable", or "free" (after RELEASED, EXPIRED). */
  state: string;
  /** "" when free. */
  holder: string;
  /** 0n when there is no readable lease. */
  fencingToken: bigint;
  /** On the service's clock; undefined when free. */
  acquiredAt: Date | undefined;
  expiresAt: Date | undefined;
  /** ms; undefined when free. */
  ttl: number | undefined;
  waiters: number;
  /** When the service saw it. */
  time: Date;
  /** HANDED_OVER: who held it before. */
  previousHolder?: string;
  previousFencingToken?: bigint;
}

export interface WatchOptions {
  /** Aborting ends the iteration (without an error). */
  signal?: AbortSignal;
}
