import { InvalidArgumentError } from "./errors.ts";

// Limits on what a client may ask for. They are part of the contract
// (proto/mcplockd/v1/lock.proto documents them) and of the file protocol.

/**
 * A whole-string match: in JavaScript `$` without the `m` flag matches only
 * at the end of the input. Ports must keep that (Python: re.fullmatch; its
 * `$` also accepts a trailing newline).
 */
export const RESOURCE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const DEFAULT_TTL_MS = 30_000;
export const MIN_TTL_MS = 1_000;
export const MAX_TTL_MS = 3_600_000;
export const MAX_WAIT_MS = 24 * 3_600_000;
export const MAX_HOLDER_BYTES = 256;
export const MAX_METADATA_ENTRIES = 32;
export const METADATA_KEY_PATTERN = /^[A-Za-z0-9._/-]{1,64}$/;
export const MAX_METADATA_VALUE_BYTES = 1024;
export const MAX_METADATA_TOTAL_BYTES = 8192;
/** Longer strings cannot be lease ids; reject them before hashing. */
export const MAX_LEASE_ID_LENGTH = 128;
/** ForceRelease's reason, written to the log. */
export const MAX_REASON_BYTES = 1024;

// Control characters would corrupt logs and terminals that show holders.
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

export function validateResource(resource: string, field = "resource"): string {
  if (resource.length === 0) throw new InvalidArgumentError(field, "must not be empty");
  if (resource.length > 128) {
    throw new InvalidArgumentError(field, `is ${resource.length} characters; the limit is 128`);
  }
  if (!RESOURCE_NAME_PATTERN.test(resource)) {
    throw new InvalidArgumentError(
      field,
      `${JSON.stringify(resource)} must match ${RESOURCE_NAME_PATTERN.source} (letters, digits, '.', '_', '-'; no '/', no leading '.')`,
    );
  }
  return resource;
}

export function validateHolder(holder: string): string {
  const bytes = Buffer.byteLength(holder, "utf8");
  if (bytes > MAX_HOLDER_BYTES) {
    throw new InvalidArgumentError("holder", `is ${bytes} bytes; the limit is ${MAX_HOLDER_BYTES} bytes`);
  }
  if (CONTROL_CHARACTERS.test(holder)) {
    throw new InvalidArgumentError("holder", "must not contain control characters");
  }
  return holder === "" ? "anonymous" : holder;
}

export function validateTtl(ttlMs: number | undefined): number {
  if (ttlMs === undefined) return DEFAULT_TTL_MS;
  if (!Number.isFinite(ttlMs) || ttlMs < MIN_TTL_MS || ttlMs > MAX_TTL_MS) {
    throw new InvalidArgumentError("ttl", `is ${describeMs(ttlMs)}; allowed is 1s to 3600s`);
  }
  return Math.ceil(ttlMs);
}

/** 0 means try once. */
export function validateWait(waitMs: number | undefined): number {
  if (waitMs === undefined) return 0;
  if (!Number.isFinite(waitMs) || waitMs < 0 || waitMs > MAX_WAIT_MS) {
    throw new InvalidArgumentError("wait_timeout", `is ${describeMs(waitMs)}; allowed is 0s to 86400s`);
  }
  return Math.ceil(waitMs);
}

export function validateMetadata(metadata: Record<string, string>): Record<string, string> {
  const entries = Object.entries(metadata);
  if (entries.length > MAX_METADATA_ENTRIES) {
    throw new InvalidArgumentError("metadata", `has ${entries.length} entries; the limit is ${MAX_METADATA_ENTRIES}`);
  }
  let total = 0;
  for (const [key, value] of entries) {
    if (!METADATA_KEY_PATTERN.test(key)) {
      throw new InvalidArgumentError(
        "metadata",
        `key ${JSON.stringify(key.slice(0, 80))} must match ${METADATA_KEY_PATTERN.source}`,
      );
    }
    const bytes = Buffer.byteLength(value, "utf8");
    if (bytes > MAX_METADATA_VALUE_BYTES) {
      throw new InvalidArgumentError(
        "metadata",
        `value of key "${key}" is ${bytes} bytes; the limit is ${MAX_METADATA_VALUE_BYTES} bytes`,
      );
    }
    total += key.length + bytes;
  }
  if (total > MAX_METADATA_TOTAL_BYTES) {
    throw new InvalidArgumentError("metadata", `is ${total} bytes in all; the limit is ${MAX_METADATA_TOTAL_BYTES} bytes`);
  }
  return { ...metadata };
}

/** Over-long ids are malformed, not merely unknown: refused rather than echoed back. */
export function validateLeaseId(leaseId: string): string {
  if (leaseId.length > MAX_LEASE_ID_LENGTH) {
    throw new InvalidArgumentError("lease_id", `is ${leaseId.length} characters; the limit is ${MAX_LEASE_ID_LENGTH}`);
  }
  return leaseId;
}

/** A listing prefix is at most as long as a resource name; it may be empty or partial. */
export function validateResourcePrefix(prefix: string): string {
  if (prefix.length > 128) throw new InvalidArgumentError("resource_prefix", `is ${prefix.length} characters; the limit is 128`);
  return prefix;
}

export function validateReason(reason: string): string {
  const bytes = Buffer.byteLength(reason, "utf8");
  if (bytes > MAX_REASON_BYTES) throw new InvalidArgumentError("reason", `is ${bytes} bytes; the limit is ${MAX_REASON_BYTES} bytes`);
  if (CONTROL_CHARACTERS.test(reason)) throw new InvalidArgumentError("reason", "must not contain control characters");
  return reason;
}

function describeMs(ms: number): string {
  return Number.isFinite(ms) ? `${ms / 1000}s` : String(ms);
}
