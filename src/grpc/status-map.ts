import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { LockError, type LockErrorCode } from "../core/errors.ts";

/** The one place where lock errors become gRPC statuses. */
export const STATUS_OF: Record<LockErrorCode, status> = {
  RESOURCE_BUSY: status.ABORTED,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  LEASE_NOT_FOUND: status.NOT_FOUND,
  STORE_UNAVAILABLE: status.UNAVAILABLE,
  STORE_FAILURE: status.INTERNAL,
  WAIT_CANCELLED: status.CANCELLED,
  WAIT_DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  SHUTTING_DOWN: status.UNAVAILABLE,
  STARTING: status.UNAVAILABLE,
};

export function toServiceError(err: unknown): Partial<ServiceError> {
  const metadata = new Metadata();
  if (err instanceof LockError) {
    metadata.set("mcp-lockd-error-code", err.code);
    return { code: STATUS_OF[err.code], details: err.message, metadata };
  }
  // A bug, not the caller's fault: say so without leaking internals.
  return { code: status.INTERNAL, details: `internal error: ${(err as Error)?.message ?? String(err)}`, metadata };
}
