import { StoreFailureError, StoreUnavailableError, type LockError } from "../core/errors.ts";

// errnos that mean "the lock dir cannot be used right now" rather than a bug:
// the caller may retry once an operator fixes permissions, space or mounts.
const UNAVAILABLE_ERRNOS = new Set([
  "EACCES",
  "EPERM",
  "EROFS",
  "ENOSPC",
  "EDQUOT",
  "ENOTDIR",
  "EEXIST", // the lock dir path is a regular file
  "ENOENT",
  "EMFILE",
  "ENFILE",
  "EBUSY",
  "EAGAIN",
  "EIO",
  "ELOCKED",
]);

/** Wraps a file-system error with what was being done, the path and the errno. */
export function toStoreError(action: string, path: string, err: unknown): LockError {
  const errno = (err as NodeJS.ErrnoException | undefined)?.code ?? "UNKNOWN";
  const detail = err instanceof Error ? err.message : String(err);
  const message = `${action} failed at ${path}: ${errno} (${detail})`;
  return UNAVAILABLE_ERRNOS.has(errno)
    ? new StoreUnavailableError(message, path, errno)
    : new StoreFailureError(message, path, errno);
}
