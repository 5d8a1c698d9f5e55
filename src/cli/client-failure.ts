import { status } from "@grpc/grpc-js";
import {
  AccessDeniedError,
  InvalidArgumentError,
  LeaseLostError,
  LockClientError,
  ResourceBusyError,
  UnavailableError,
} from "../client/index.ts";
import { UsageError } from "./client-options.ts";
import { quoted, printable } from "./display-text.ts";
import { formatDuration } from "./duration.ts";
import { EXIT_BUSY, EXIT_FAILURE, EXIT_LEASE_LOST, EXIT_NO_PERMISSION, EXIT_UNAVAILABLE, EXIT_USAGE } from "./exit-codes.ts";

// How the client commands turn an error into an exit code and a message.

export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError || err instanceof InvalidArgumentError) return EXIT_USAGE;
  if (err instanceof ResourceBusyError) return EXIT_BUSY;
  if (err instanceof LeaseLostError) return EXIT_LEASE_LOST;
  if (err instanceof UnavailableError) return EXIT_UNAVAILABLE;
  if (err instanceof AccessDeniedError) return EXIT_NO_PERMISSION;
  // Only unary calls (list, release) have deadlines: the service did not answer in time.
  if (err instanceof LockClientError && err.code === status.DEADLINE_EXCEEDED) return EXIT_UNAVAILABLE;
  return EXIT_FAILURE;
}

/** One line (no newline) saying what went wrong, with a hint where one helps. */
export function describeFailure(err: unknown, address: string, nowMs = Date.now()): string {
  if (err instanceof ResourceBusyError) return describeBusy(err, nowMs);
  if (err instanceof UnavailableError) {
    const unreachable = /connect|ECONNREFUSED|No connection|unreachable|resolve/i.test(err.message);
    // With several addresses the client's message already lists what it tried.
    const where = err.message.includes("(tried ") ? "at any of them" : `on ${address}`;
    return `${printable(err.message)}${unreachable ? ` (is mcp-lockd serving ${where}?)` : ""}`;
  }
  if (err instanceof Error) return printable(err.message);
  return printable(String(err));
}

/** `"gateway" is held by "ci-42" (expires in 18s)`, or the service's own words when it named no holder. */
export function describeBusy(err: ResourceBusyError, nowMs = Date.now()): string {
  if (err.holder === undefined) return printable(err.message);
  const expiry =
    err.expiresAt === undefined
      ? ""
      : ` until ${err.expiresAt.toISOString()} (expires in ${formatDuration(Math.max(0, err.expiresAt.getTime() - nowMs))} unless renewed)`;
  return `${quoted(err.resource)} is held by ${quoted(err.holder)}${expiry}`;
}
