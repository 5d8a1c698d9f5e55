import * as z from "zod";
import type { LockInfo } from "../client/index.ts";
import { lockToJson } from "../cli/lock-table.ts";
import {
  MAX_TTL_MS,
  MAX_WAIT_MS,
  MIN_TTL_MS,
  RESOURCE_NAME_PATTERN,
} from "../core/limits.ts";

// The MCP tools' input and output schemas, and the JSON of a listed lock
// (lock_status and locks://status), in one place. Limits come from
// src/core/limits.ts, so the schemas an agent sees state the service's own.

const resource = z
  .string()
  .regex(RESOURCE_NAME_PATTERN)
  .describe("The lock's name: letters, digits, '.', '_', '-', at most 128 characters, e.g. \"deploy-production\" or \"repo.main\"");

const lostLocks = z
  .array(
    z.object({
      resource: z.string(),
      fencing_token: z.number(),
      reason: z.string().describe('"expired" (the lease is gone on the service) or "unconfirmed" (the service could not be reached before it expired)'),
      lost_at: z.string(),
      message: z.string(),
    }),
  )
  .optional()
  .describe("Locks this session lost since the previous tool call: stop relying on them");

export const acquireInput = {
  resource,
  ttl_seconds: z
    .number()
    .min(MIN_TTL_MS / 1000)
    .max(MAX_TTL_MS / 1000)
    .optional()
    .describe("Lease time to live, 1 to 3600 s (default 30). The server renews the lease while this session lives; the ttl is how long the lock outlives a crashed session"),
  wait_seconds: z
    .number()
    .min(0)
    .max(MAX_WAIT_MS / 1000)
    .optional()
    .describe("How long to wait in line (FIFO) if the lock is held, up to 86400 s; 0 or absent tries once"),
  purpose: z
    .string()
    .optional()
    .describe("What the lock is taken for, shown to others in lock_status (at most 1024 bytes), e.g. \"deploying gateway v2\""),
};

export const acquireOutput = {
  resource: z.string(),
  fencing_token: z.number().describe("Strictly increasing per resource: pass it to whatever checks it, so that writes of a former holder can be refused"),
  expires_at: z.string().describe("RFC 3339; renewed automatically while this session lives"),
  ttl_seconds: z.number(),
  holder: z.string(),
  already_held: z.boolean().describe("True when this session held the lock already (nothing changed)"),
  waited_seconds: z.number(),
  lost_locks: lostLocks,
};

export const releaseInput = { resource };

export const releaseOutput = {
  resource: z.string(),
  released: z.boolean().describe("True: released now. False: this session did not hold it"),
  lost_locks: lostLocks,
};

export const statusInput = {
  prefix: z.string().max(128).optional().describe("Only locks whose name starts with this"),
};

const statusEntry = z.object({
  resource: z.string(),
  holder: z.string(),
  held_for_seconds: z.number(),
  expires_in_seconds: z.number(),
  fencing_token: z.number().nullable(),
  waiters: z.number(),
  state: z.enum(["held", "unreadable"]),
  held_by_this_session: z.boolean(),
  acquired_at: z.string(),
  expires_at: z.string(),
  ttl: z.number(),
  metadata: z.record(z.string(), z.string()),
});

export type StatusEntry = z.infer<typeof statusEntry>;

export const statusOutput = {
  locks: z.array(statusEntry),
  lost_locks: lostLocks,
};

/** A listed lock for an agent: the /health/locks fields plus held for, expires in, and whether it is this session's. */
export function statusEntryOf(lock: LockInfo, nowMs: number, heldByThisSession: boolean): StatusEntry {
  const json = lockToJson(lock);
  return {
    resource: json.resource,
    holder: json.holder,
    held_for_seconds: roundSeconds(nowMs - lock.acquiredAt.getTime()),
    expires_in_seconds: roundSeconds(lock.expiresAt.getTime() - nowMs),
    fencing_token: json.fencing_token,
    waiters: json.waiters,
    state: json.state,
    held_by_this_session: heldByThisSession,
    acquired_at: json.acquired_at,
    expires_at: json.expires_at,
    ttl: json.ttl,
    metadata: json.metadata,
  };
}

function roundSeconds(ms: number): number {
  return Math.max(0, Math.round(ms / 100) / 10);
}
