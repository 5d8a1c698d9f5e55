import { status } from "@grpc/grpc-js";

// Errors of the TypeScript client. Every one carries `code`, the gRPC status
// it came from (or the status that describes it best when it arose in the
// client); callers branch on the class. src/client/status-errors.ts maps
// statuses to these classes, in one place.

export class LockClientError extends Error {
  constructor(
    message: string,
    /** The gRPC status code. */
    readonly code: status,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "LockClientError";
  }
}

/** The resource is held by someone else (tried once, or the wait ran out). */
export class ResourceBusyError extends LockClientError {
  constructor(
    message: string,
    readonly resource: string,
    /** Who holds it, when the service said. */
    readonly holder: string | undefined,
    /** When the holder's lease expires unless renewed (service's clock), when the service said. */
    readonly expiresAt: Date | undefined,
    options?: ErrorOptions,
  ) {
    super(message, status.ABORTED, options);
    this.name = "ResourceBusyError";
  }
}

/**
 * Why a lease was lost: "expired" when the service answered that it is gone
 * (expired, released by someone holding its id, or its file removed);
 * "unconfirmed" when no renewal was confirmed before its last confirmed
 * expiry (the service was unreachable); "closed" when the client was closed
 * while holding it.
 */
export type LeaseLossReason = "expired" | "unconfirmed" | "closed";

const LOSS_STATUS: Record<LeaseLossReason, status> = {
  expired: status.NOT_FOUND,
  unconfirmed: status.UNAVAILABLE,
  closed: status.CANCELLED,
};

/** The lease is gone: stop using the resource. */
export class LeaseLostError extends LockClientError {
  constructor(
    readonly resource: string | undefined,
    readonly reason: LeaseLossReason,
    message: string,
    code: status = LOSS_STATUS[reason],
    options?: ErrorOptions,
  ) {
    super(message, code, options);
    this.name = "LeaseLostError";
  }
}

/** A malformed argument or one over its limit; the message names the field and the limit. */
export class InvalidArgumentError extends LockClientError {
  constructor(
    message: string,
    /** The field, when known. */
    readonly field?: string,
    options?: ErrorOptions,
  ) {
    super(message, status.INVALID_ARGUMENT, options);
    this.name = "InvalidArgumentError";
  }
}

/**
 * The service refused the caller: no or unknown credentials
 * (UNAUTHENTICATED), or its principal may not do this (PERMISSION_DENIED;
 * the message names the resource and the action).
 */
export class AccessDeniedError extends LockClientError {
  constructor(message: string, code: status.UNAUTHENTICATED | status.PERMISSION_DENIED, options?: ErrorOptions) {
    super(message, code, options);
    this.name = "AccessDeniedError";
  }
}

/** The service cannot be reached, is starting or shutting down, or its lock dir cannot be used. Retryable. */
export class UnavailableError extends LockClientError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, status.UNAVAILABLE, options);
    this.name = "UnavailableError";
  }
}

/** A Watch fell too far behind and the service ended it; open a new watch (it starts with a fresh snapshot). */
export class WatcherTooSlowError extends LockClientError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, status.RESOURCE_EXHAUSTED, options);
    this.name = "WatcherTooSlowError";
  }
}
