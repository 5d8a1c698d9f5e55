import type { LockInfo } from "../client/index.ts";
import { formatDuration } from "./duration.ts";
import { printable } from "./display-text.ts";
import type { HealthLockEntry } from "../http/health-lock-entry.ts";

// `mcp-lockd status`: the held locks as a table for people, or as JSON for
// programs. Neither has lease ids: ListLocks never returns them.

const HOLDER_WIDTH = 48;

/** A table with a header row, columns aligned; "no locks held" when empty. */
export function formatLockTable(locks: readonly LockInfo[], nowMs: number): string {
  if (locks.length === 0) return "no locks held\n";
  const header = ["RESOURCE", "HOLDER", "HELD FOR", "TTL", "EXPIRES IN", "FENCING TOKEN", "WAITERS"];
  const rows = locks.map((lock) => {
    const unreadable = lock.state !== "held";
    const expiresIn = lock.expiresAt.getTime() - nowMs;
    return [
      printable(lock.resource),
      clip(printable(lock.holder) + (unreadable ? ` (${printable(lock.state)} lease file)` : ""), HOLDER_WIDTH),
      formatDuration(Math.max(0, nowMs - lock.acquiredAt.getTime())),
      formatDuration(lock.ttl),
      expiresIn > 0 ? formatDuration(expiresIn) : "expired",
      unreadable ? "-" : String(lock.fencingToken),
      String(lock.waiters),
    ];
  });
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => [...row[column]!].length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell + " ".repeat(widths[column]! - [...cell].length)))
      .join("  ")
      .trimEnd() + "\n";
  return line(header) + rows.map(line).join("");
}

/** One lock as JSON, in the shape of GET /health/locks. */
export function lockToJson(lock: LockInfo): HealthLockEntry {
  return {
    resource: lock.resource,
    holder: lock.holder,
    acquired_at: lock.acquiredAt.toISOString(),
    ttl: lock.ttl / 1000,
    expires_at: lock.expiresAt.toISOString(),
    // Tokens stay far below 2^53 (the file protocol stores them as JSON numbers).
    fencing_token: lock.state === "held" ? Number(lock.fencingToken) : null,
    waiters: lock.waiters,
    state: lock.state === "held" ? "held" : "unreadable",
    metadata: lock.metadata,
  };
}

function clip(text: string, width: number): string {
  const chars = [...text];
  return chars.length <= width ? text : `${chars.slice(0, width - 1).join("")}…`;
}
