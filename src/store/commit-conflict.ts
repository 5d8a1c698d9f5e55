/**
 * A step found, right before it would commit, that it may not: its guard's
 * deadline passed, or the lease file or the fencing counter is not what it
 * read under the guard (someone broke a guard it held too long). Nothing was
 * committed; the store starts the operation over from a fresh read.
 */
export class CommitConflictError extends Error {
  override name = "CommitConflictError";
}
