import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { InvalidArgumentError, LockError, ResourceBusyError, type LockErrorCode } from "../core/errors.ts";
import { ERROR_CODE_KEY, EXPIRES_AT_KEY, FIELD_KEY, HOLDER_KEY } from "./error-metadata.ts";

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
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  LIMIT_REACHED: status.RESOURCE_EXHAUSTED,
  WATCHER_TOO_SLOW: status.RESOURCE_EXHAUSTED,
};

export function toServiceError(err: unknown): Partial<ServiceError> {
  const metadata = new Metadata();
  if (err instanceof LockError) {
    metadata.set(ERROR_CODE_KEY, err.code);
    if (err instanceof ResourceBusyError) {
      if (err.holder !== undefined) metadata.set(HOLDER_KEY, Buffer.from(err.holder, "utf8"));
      if (err.expiresAt !== undefined) metadata.set(EXPIRES_AT_KEY, new Date(err.expiresAt).toISOString());
    }
    // Field names are ASCII identifiers chosen by the core (resource, ttl, metadata...).
    if (err instanceof InvalidArgumentError && /^[ -~]*$/.test(err.field)) metadata.set(FIELD_KEY, err.field);
    return { code: STATUS_OF[err.code], details: err.message, metadata };
  }
  // A bug, not the caller's fault: say so without leaking internals.
  return { code: status.INTERNAL, details: `internal error: ${(err as Error)?.message ?? String(err)}`, metadata };
}
