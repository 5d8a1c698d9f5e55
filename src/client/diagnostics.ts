import { EventEmitter } from "node:events";

// What the shared KeepAlive stream did, for tests and measurements. Not part
// of the package's documented API: reach it with
// `client[keepAliveDiagnostics]` (import the symbol from this module).

export const keepAliveDiagnostics = Symbol("mcp-lockd.keepAliveDiagnostics");

export interface KeepAliveStats {
  /** KeepAlive streams opened over the client's life (1 while nothing breaks). */
  streamsOpened: number;
  /** Whether a stream is open now. */
  streamOpen: boolean;
  /** Reconnections scheduled after a stream broke or failed to open. */
  reconnectAttempts: number;
  renewalsSent: number;
  renewalsConfirmed: number;
  /** Renewals the service answered with an error of that lease (its file could not be read or written). */
  renewalsFailed: number;
  /** Leases being kept alive now. */
  leases: number;
}

/**
 * Events (all with a `performance.now()` timestamp `at`):
 * - "stream-opened" { at, reconnect: boolean, address }
 * - "stream-broken" { at, code, details, address }
 * - "reconnect-scheduled" { at, delayMs, attempt }
 * - "renewed" { at, address, resource, sentAt, expiresAt: Date, ttl }
 * - "renewal-failed" { at, resource, code, message }: that lease is retried sooner
 * - "lost" { at, resource, reason }
 */
export class KeepAliveDiagnostics extends EventEmitter {
  readonly stats: KeepAliveStats = {
    streamsOpened: 0,
    streamOpen: false,
    reconnectAttempts: 0,
    renewalsSent: 0,
    renewalsConfirmed: 0,
    renewalsFailed: 0,
    leases: 0,
  };
}
