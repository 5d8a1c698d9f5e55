// Typed errors of the lock manager. Each carries a stable code; the gRPC
// adapter maps codes to statuses in one place (src/grpc/status-map.ts).

export type LockErrorCode =
  | "RESOURCE_BUSY"
  | "INVALID_ARGUMENT"
  | "LEASE_NOT_FOUND"
  | "STORE_UNAVAILABLE"
  | "STORE_FAILURE"
  | "WAIT_CANCELLED"
  | "WAIT_DEADLINE_EXCEEDED"
  | "SHUTTING_DOWN"
  | "STARTING"
  | "UNAUTHENTICATED"
  | "PERMISSION_DENIED"
  | "LIMIT_REACHED"
  | "WATCHER_TOO_SLOW";

export abstract class LockError extends Error {
  abstract readonly code: LockErrorCode;
}

/** The resource is held by someone else (try once, or the wait ran out). */
export class ResourceBusyError extends LockError {
  readonly code = "RESOURCE_BUSY";
  constructor(
    readonly resource: string,
    readonly holder: string | undefined,
    readonly expiresAt: number | undefined,
    readonly waiting: number,
    why: string,
  ) {
    const held =
      holder === undefined
        ? "is busy"
        : `is held by "${holder}" until ${new Date(expiresAt ?? 0).toISOString()}`;
    const queue = waiting > 0 ? ` (${waiting} waiting)` : "";
    super(`resource "${resource}" ${held}${queue}: ${why}`);
    this.name = "ResourceBusyError";
  }
}

/** A request field is malformed or over its limit; the message names both. */
export class InvalidArgumentError extends LockError {
  readonly code = "INVALID_ARGUMENT";
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`${field}: ${detail}`);
    this.name = "InvalidArgumentError";
  }
}

/** The lease id is unknown or its lease has expired. */
export class LeaseNotFoundError extends LockError {
  readonly code = "LEASE_NOT_FOUND";
  constructor() {
    // Never echo the lease id: it is a capability.
    super("lease not found: unknown lease_id, or the lease has expired or was released");
    this.name = "LeaseNotFoundError";
  }
}

/** A file-system (or other store) failure, with the path and errno when known. */
export abstract class StoreError extends LockError {
  constructor(
    message: string,
    readonly path?: string,
    readonly errno?: string,
  ) {
    super(message);
  }
}

/** The store cannot be used right now (permissions, full disk, guard busy). Retryable. */
export class StoreUnavailableError extends StoreError {
  readonly code = "STORE_UNAVAILABLE";
  override name = "StoreUnavailableError";
}

/** An unexpected store failure (an errno we do not expect, a corrupt counter). */
export class StoreFailureError extends StoreError {
  readonly code = "STORE_FAILURE";
  override name = "StoreFailureError";
}

export class WaitCancelledError extends LockError {
  readonly code = "WAIT_CANCELLED";
  constructor(resource?: string) {
    super(resource ? `waiting for resource "${resource}" was cancelled by the caller` : "the call was cancelled");
    this.name = "WaitCancelledError";
  }
}

export class WaitDeadlineError extends LockError {
  readonly code = "WAIT_DEADLINE_EXCEEDED";
  constructor(resource?: string) {
    super(resource ? `the call's deadline passed while waiting for resource "${resource}"` : "the call's deadline passed");
    this.name = "WaitDeadlineError";
  }
}

export class ShuttingDownError extends LockError {
  readonly code = "SHUTTING_DOWN";
  constructor() {
    super("mcp-lockd is shutting down; retry against the restarted service");
    this.name = "ShuttingDownError";
  }
}

/** The service is still loading the lease files; lock calls must wait. */
export class ServiceStartingError extends LockError {
  readonly code = "STARTING";
  constructor(what: string) {
    super(`mcp-lockd is starting (${what}); retry shortly`);
    this.name = "ServiceStartingError";
  }
}

/** Authorization is on and the call carries no credentials, or unknown ones. */
export class UnauthenticatedError extends LockError {
  readonly code = "UNAUTHENTICATED";
  constructor(why: string) {
    super(`unauthenticated: ${why}`);
    this.name = "UnauthenticatedError";
  }
}

/** The caller's principal has no grant for this action on this resource. */
export class PermissionDeniedError extends LockError {
  readonly code = "PERMISSION_DENIED";
  constructor(
    readonly principal: string,
    readonly action: string,
    readonly resource: string | undefined,
  ) {
    const on = resource === undefined ? "" : ` on resource "${resource}"`;
    super(`permission denied: principal "${principal}" may not ${action}${on}`);
    this.name = "PermissionDeniedError";
  }
}

/** A configured limit (waiters, leases, streams...) is reached; the message names it and its value. */
export class LimitReachedError extends LockError {
  readonly code = "LIMIT_REACHED";
  constructor(
    readonly limit: string,
    readonly value: number,
    detail: string,
  ) {
    super(`limit ${limit} (${value}) reached: ${detail}`);
    this.name = "LimitReachedError";
  }
}

/** A watcher read too slowly: more events were queued for it than the limit. */
export class WatcherTooSlowError extends LockError {
  readonly code = "WATCHER_TOO_SLOW";
  constructor(limit: number) {
    super(`the watcher fell behind: more than ${limit} events were queued for it; open a new Watch (it starts with a fresh snapshot)`);
    this.name = "WatcherTooSlowError";
  }
}
