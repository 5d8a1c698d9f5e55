import type { LockEvent } from "../core/lock-events.ts";

/**
 * One lock event as JSON: a line of `mcp-lockd status --watch` off a
 * terminal, and the data of the web view's server-sent events. snake_case,
 * times as RFC 3339, ttl in seconds, like GET /health/locks; never a lease id.
 */
export interface LockEventJson {
  type: string;
  resource: string;
  state: string;
  holder: string;
  /** null when there is no readable lease. */
  fencing_token: number | null;
  acquired_at: string | null;
  expires_at: string | null;
  ttl: number | null;
  waiters: number;
  time: string;
  previous_holder?: string;
  previous_fencing_token?: number;
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

export function lockEventToJson(event: LockEvent): LockEventJson {
  const json: LockEventJson = {
    type: event.type,
    resource: event.resource,
    state: event.state,
    holder: event.holder,
    fencing_token: event.fencingToken === 0 ? null : event.fencingToken,
    acquired_at: iso(event.acquiredAt),
    expires_at: iso(event.expiresAt),
    ttl: event.ttlMs === undefined ? null : event.ttlMs / 1000,
    waiters: event.waiters,
    time: new Date(event.time).toISOString(),
  };
  if (event.previous) {
    json.previous_holder = event.previous.holder;
    json.previous_fencing_token = event.previous.fencingToken;
  }
  return json;
}
