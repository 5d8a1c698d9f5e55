import { Buffer } from "node:buffer";
import type { McpServer } from "./sdk.ts";
import type { CallToolResult } from "./sdk.ts";
import type { LockClient } from "../client/index.ts";
import { describeFailure } from "../cli/client-failure.ts";
import { quoted } from "../cli/display-text.ts";
import { formatDuration } from "../cli/duration.ts";
import { MAX_METADATA_VALUE_BYTES, MAX_WAIT_MS } from "../core/limits.ts";
import type { SessionLocks, LostLock } from "./session-locks.ts";
import {
  acquireInput,
  acquireOutput,
  releaseInput,
  releaseOutput,
  statusEntryOf,
  statusInput,
  statusOutput,
} from "./tool-schemas.ts";
import { startWaitProgress } from "./wait-progress.ts";

// The three lock tools. Each returns structured content (matching its output
// schema) and the same facts as text; failures are tool errors (isError) with
// a message an agent can act on. Every result carries the locks this session
// lost since the previous call (lost_locks), so a loss is never missed.

export interface LockToolsContext {
  client: LockClient;
  locks: SessionLocks;
  /** The holder name for this session's locks (known once the client has said who it is). */
  holder: () => string;
  /** The service's address, for error messages. */
  address: string;
}

export function registerLockTools(server: McpServer, context: LockToolsContext): void {
  const { client, locks } = context;

  server.registerTool(
    "lock_acquire",
    {
      title: "Take a lock",
      description:
        "Take a named lock before doing something that others must not do at the same time (deploying, restarting the gateway, editing a shared file). " +
        "Returns a fencing token: pass it on to whatever checks it. The lock is kept alive for as long as this session lives and released when it ends; release it with lock_release as soon as you are done. " +
        "If the lock is held, this fails at once naming the holder, unless wait_seconds is given: then it waits in line (first come, first served) and reports progress.",
      inputSchema: acquireInput,
      outputSchema: acquireOutput,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    async (args, extra): Promise<CallToolResult> => {
      const lost = locks.takeLosses();
      const already = locks.held(args.resource);
      if (already !== undefined) {
        return result(lost, `This session already holds ${quoted(already.resource)} (fencing token ${already.fencingToken}); nothing changed.`, {
          ...grantOf(already, 0),
          already_held: true,
        });
      }
      if (args.purpose !== undefined && Buffer.byteLength(args.purpose, "utf8") > MAX_METADATA_VALUE_BYTES) {
        return failure(lost, `purpose: is ${Buffer.byteLength(args.purpose, "utf8")} bytes; the limit is ${MAX_METADATA_VALUE_BYTES} bytes`);
      }
      const waitMs = Math.min(MAX_WAIT_MS, Math.round((args.wait_seconds ?? 0) * 1000));
      const progressToken = extra._meta?.progressToken;
      const stopProgress =
        waitMs > 0 && progressToken !== undefined
          ? startWaitProgress({
              resource: args.resource,
              waitMs,
              list: (prefix) => client.list(prefix),
              notify: (progress, total, message) =>
                extra.sendNotification({ method: "notifications/progress", params: { progressToken, progress, total, message } }),
            })
          : undefined;
      const started = Date.now();
      try {
        const lock = await locks.acquire(args.resource, {
          holder: context.holder(),
          ttl: args.ttl_seconds === undefined ? undefined : Math.round(args.ttl_seconds * 1000),
          wait: waitMs,
          metadata: args.purpose === undefined ? {} : { purpose: args.purpose },
          // The client cancelled the call (notifications/cancelled): leave the queue.
          signal: extra.signal,
        });
        const waited = Date.now() - started;
        const grant = { ...grantOf(lock, waited), already_held: false };
        return result(
          lost,
          `Acquired ${quoted(lock.resource)}${waited >= 1000 ? ` after waiting ${formatDuration(waited)}` : ""}: fencing token ${lock.fencingToken}, ` +
            `ttl ${formatDuration(lock.ttl)} (kept alive while this session lives), holder ${quoted(lock.holder)}. Release it with lock_release when done.`,
          grant,
        );
      } catch (err) {
        if (extra.signal.aborted) return failure(lost, `lock_acquire of ${quoted(args.resource)} was cancelled; this session left the queue`);
        const waited = waitMs > 0 ? ` (waited ${formatDuration(Date.now() - started)})` : "";
        return failure(lost, `${describeFailure(err, context.address)}${waited}`);
      } finally {
        stopProgress?.();
      }
    },
  );

  server.registerTool(
    "lock_release",
    {
      title: "Release a lock",
      description:
        "Release a lock this session holds, as soon as the work it protects is done, so that the next in line gets it. " +
        "Says released: false if this session does not hold it (never taken, already released, or lost).",
      inputSchema: releaseInput,
      outputSchema: releaseOutput,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    async (args): Promise<CallToolResult> => {
      const lost = locks.takeLosses();
      try {
        const released = await locks.release(args.resource);
        return result(
          lost,
          released ? `Released ${quoted(args.resource)}.` : `This session does not hold ${quoted(args.resource)}; nothing to release.`,
          { resource: args.resource, released },
        );
      } catch (err) {
        return failure(lost, `could not release ${quoted(args.resource)}: ${describeFailure(err, context.address)}; it expires by its ttl unless released`);
      }
    },
  );

  server.registerTool(
    "lock_status",
    {
      title: "List locks",
      description:
        "List every held lock (or those whose name starts with prefix): holder, how long it has been held, when it expires unless renewed, fencing token, how many wait for it, and whether this session holds it. " +
        "Locks taken through gRPC clients, `mcp-lockd run` and lease files appear too.",
      inputSchema: statusInput,
      outputSchema: statusOutput,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async (args): Promise<CallToolResult> => {
      const lost = locks.takeLosses();
      try {
        const entries = await listEntries(context, args.prefix ?? "");
        const text =
          entries.length === 0
            ? `No locks are held${args.prefix ? ` whose name starts with ${quoted(args.prefix)}` : ""}.`
            : entries
                .map(
                  (entry) =>
                    `${quoted(entry.resource)}: held by ${quoted(entry.holder)}${entry.held_by_this_session ? " (this session)" : ""} for ${entry.held_for_seconds}s, ` +
                    `expires in ${entry.expires_in_seconds}s, fencing token ${entry.fencing_token ?? "unknown"}, ${entry.waiters} waiting`,
                )
                .join("\n");
        return result(lost, text, { locks: entries });
      } catch (err) {
        return failure(lost, describeFailure(err, context.address));
      }
    },
  );
}

/** The locks as lock_status and locks://status show them. */
export async function listEntries(context: Pick<LockToolsContext, "client" | "locks">, prefix: string) {
  const listed = await context.client.list(prefix);
  const now = Date.now();
  return listed.map((lock) => statusEntryOf(lock, now, lock.state === "held" && context.locks.holds(lock.resource, lock.fencingToken)));
}

function grantOf(
  lock: { resource: string; fencingToken: bigint; expiresAt: Date; ttl: number; holder: string },
  waitedMs: number,
) {
  return {
    resource: lock.resource,
    fencing_token: Number(lock.fencingToken),
    expires_at: lock.expiresAt.toISOString(),
    ttl_seconds: lock.ttl / 1000,
    holder: lock.holder,
    waited_seconds: Math.round(waitedMs / 100) / 10,
  };
}

function lossText(lost: LostLock[]): string {
  return lost
    .map((loss) => `LOST: this session's lock on ${quoted(loss.resource)} (fencing token ${loss.fencing_token}) was lost at ${loss.lost_at} (${loss.reason}): ${loss.message}. Stop relying on it.\n`)
    .join("");
}

function result(lost: LostLock[], text: string, structured: Record<string, unknown>): CallToolResult {
  const structuredContent = lost.length > 0 ? { ...structured, lost_locks: lost } : structured;
  return { content: [{ type: "text", text: `${lossText(lost)}${text}` }], structuredContent };
}

function failure(lost: LostLock[], text: string): CallToolResult {
  return { isError: true, content: [{ type: "text", text: `${lossText(lost)}${text}` }] };
}
