import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import type { RenewalError } from "../gen/mcplockd/v1/lock.ts";
import {
  AccessDeniedError,
  InvalidArgumentError,
  LeaseLostError,
  LockClientError,
  ResourceBusyError,
  UnavailableError,
  WatcherTooSlowError,
} from "./errors.ts";
import { ERROR_CODE_KEY, EXPIRES_AT_KEY, FIELD_KEY, HOLDER_KEY } from "../grpc/error-metadata.ts";

// The one place where gRPC statuses become the client's typed errors.


export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === "number" && "details" in err;
}

export function errorFromStatus(err: ServiceError, resource?: string): LockClientError {
  const message = err.details || err.message;
  const options = { cause: err };
  switch (err.code) {
    case status.ABORTED: {
      const { holder, expiresAt } = busyDetails(err.metadata, message);
      return new ResourceBusyError(message, resource ?? "", holder, expiresAt, options);
    }
    case status.INVALID_ARGUMENT:
      return new InvalidArgumentError(message, firstString(err.metadata, FIELD_KEY) ?? /^([\w.[\]]+):/.exec(message)?.[1], options);
    case status.UNAVAILABLE:
      return new UnavailableError(message, options);
    case status.UNAUTHENTICATED:
    case status.PERMISSION_DENIED:
      return new AccessDeniedError(message, err.code, options);
    case status.RESOURCE_EXHAUSTED:
      // Also the service's limits (waiters, leases, streams): only a Watch that fell behind is a WatcherTooSlowError.
      if (firstString(err.metadata, ERROR_CODE_KEY) === "WATCHER_TOO_SLOW" || /the watcher fell behind/.test(message)) {
        return new WatcherTooSlowError(message, options);
      }
      return new LockClientError(message, err.code, options);
    case status.NOT_FOUND:
      return new LeaseLostError(resource, "expired", message, status.NOT_FOUND, options);
    default:
      return new LockClientError(message, err.code, options);
  }
}

/** A renewal's in-band error (KeepAliveResponse.error), as the status it stands for. */
export function errorFromRenewal(error: RenewalError, resource?: string): LockClientError {
  const asStatus = Object.assign(new Error(error.message), { code: error.code, details: error.message, metadata: new Metadata() });
  return errorFromStatus(asStatus, resource);
}

/** The holder and expiry from trailing metadata, else from the message (an older service). */
function busyDetails(metadata: Metadata | undefined, message: string): { holder?: string; expiresAt?: Date } {
  const holderBytes = metadata?.get(HOLDER_KEY)[0];
  const expiresText = firstString(metadata, EXPIRES_AT_KEY);
  if (holderBytes !== undefined || expiresText !== undefined) {
    return {
      holder: holderBytes === undefined ? undefined : Buffer.from(holderBytes).toString("utf8"),
      expiresAt: expiresText === undefined ? undefined : validDate(expiresText),
    };
  }
  const match = /is held by "(.*)" until (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)/.exec(message);
  return match ? { holder: match[1], expiresAt: validDate(match[2]!) } : {};
}

function firstString(metadata: Metadata | undefined, key: string): string | undefined {
  const value = metadata?.get(key)[0];
  return typeof value === "string" ? value : undefined;
}

function validDate(text: string): Date | undefined {
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? undefined : date;
}
