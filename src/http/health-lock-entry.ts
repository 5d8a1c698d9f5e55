/**
 * One lock as JSON: an entry of GET /health/locks, and of `mcp-lockd status
 * --json`. snake_case, times as RFC 3339, ttl in seconds, fencing_token a
 * number (null for an unreadable lease file). The first four keys are the
 * fixed contract.
 */
export interface HealthLockEntry {
  resource: string;
  holder: string;
  acquired_at: string;
  ttl: number;
  expires_at: string;
  fencing_token: number | null;
  waiters: number;
  state: "held" | "unreadable";
  metadata: Record<string, string>;
}
