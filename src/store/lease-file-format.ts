import type { LeaseRecord } from "../core/lease.ts";
import { MAX_TTL_MS } from "../core/limits.ts";

// Version 1 of the lease file, as docs/lock-file.schema.json describes it.

export const LEASE_FILE_VERSION = 1;

// RFC 3339 allows lower-case 't' and 'z' (section 5.6, NOTE).
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export function serializeLease(lease: LeaseRecord, renewedAt: number): string {
  const document: Record<string, unknown> = {
    version: LEASE_FILE_VERSION,
    resource: lease.resource,
    holder: lease.holder,
    acquired_at: new Date(lease.acquiredAt).toISOString(),
    renewed_at: new Date(renewedAt).toISOString(),
    ttl: lease.ttlMs / 1000,
    expires_at: new Date(lease.expiresAt).toISOString(),
    fencing_token: lease.fencingToken,
    pid: lease.pid,
    hostname: lease.hostname,
    metadata: lease.metadata,
  };
  if (lease.leaseIdHash !== undefined) document.lease_id_sha256 = lease.leaseIdHash;
  return JSON.stringify(document, null, 2) + "\n";
}

/**
 * Parses a lease file; a string result says why it is unreadable. `modifiedAt`
 * caps the expiry: no lease outlives its file's mtime by more than the maximum
 * ttl, whatever a hand-edited expires_at says.
 */
export function parseLease(text: string, resource: string, modifiedAt: number): LeaseRecord | string {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (err) {
    return text.trim() === "" ? "the file is empty" : `not JSON (${(err as Error).message})`;
  }
  if (typeof document !== "object" || document === null || Array.isArray(document)) return "not a JSON object";
  const d = document as Record<string, unknown>;
  if (d.version !== LEASE_FILE_VERSION) return `unsupported version ${JSON.stringify(d.version)}`;
  if (d.resource !== resource) return `resource ${JSON.stringify(d.resource)} does not match the file name`;
  if (typeof d.holder !== "string") return "holder is not a string";
  const acquiredAt = parseTime(d.acquired_at);
  if (acquiredAt === undefined) return "acquired_at is not an RFC 3339 time";
  const expiresAt = parseTime(d.expires_at);
  if (expiresAt === undefined) return "expires_at is not an RFC 3339 time";
  if (d.renewed_at !== undefined && parseTime(d.renewed_at) === undefined) return "renewed_at is not an RFC 3339 time";
  if (typeof d.ttl !== "number" || !(d.ttl > 0) || d.ttl * 1000 > MAX_TTL_MS) return "ttl is not a number of seconds in (0, 3600]";
  if (!isPositiveInteger(d.fencing_token)) return "fencing_token is not a positive integer";
  if (!isPositiveInteger(d.pid) && d.pid !== 0) return "pid is not an integer";
  if (typeof d.hostname !== "string") return "hostname is not a string";
  if (d.lease_id_sha256 !== undefined && !(typeof d.lease_id_sha256 === "string" && SHA256_HEX.test(d.lease_id_sha256))) {
    return "lease_id_sha256 is not 64 lowercase hex digits";
  }
  const metadata = parseMetadata(d.metadata);
  if (metadata === undefined) return "metadata is not an object of strings";
  return {
    resource,
    holder: d.holder,
    fencingToken: d.fencing_token as number,
    acquiredAt,
    expiresAt: Math.min(expiresAt, modifiedAt + MAX_TTL_MS),
    ttlMs: Math.round(d.ttl * 1000),
    metadata,
    leaseIdHash: d.lease_id_sha256 as string | undefined,
    pid: d.pid as number,
    hostname: d.hostname,
  };
}

export function serializeFence(resource: string, fencingToken: number): string {
  return JSON.stringify({ version: LEASE_FILE_VERSION, resource, fencing_token: fencingToken }) + "\n";
}

/** The last fencing token issued, or a string saying why the file is unusable. */
export function parseFence(text: string, resource: string): number | string {
  let d: Record<string, unknown>;
  try {
    d = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return "not JSON";
  }
  if (typeof d !== "object" || d === null) return "not a JSON object";
  if (d.version !== LEASE_FILE_VERSION) return `unsupported version ${JSON.stringify(d.version)}`;
  if (d.resource !== resource) return `resource ${JSON.stringify(d.resource)} does not match the file name`;
  const token = d.fencing_token;
  if (typeof token !== "number" || !Number.isSafeInteger(token) || token < 0) return "fencing_token is not an integer >= 0";
  return token;
}

function parseTime(value: unknown): number | undefined {
  if (typeof value !== "string" || !RFC3339.test(value)) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

function isPositiveInteger(value: unknown): boolean {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

function parseMetadata(value: unknown): Record<string, string> | undefined {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") return undefined;
    out[k] = v;
  }
  return out;
}

/**
 * The `fencing_token` of a lease file's text if it is an integer >= 1,
 * whether or not the file is otherwise valid: a token that may have been
 * issued counts for the next one (docs/protocol.md §5, step 4).
 */
export function tokenOfAnyLeaseText(text: string): number | undefined {
  try {
    const token = (JSON.parse(text) as { fencing_token?: unknown } | null)?.fencing_token;
    return typeof token === "number" && Number.isSafeInteger(token) && token >= 1 ? token : undefined;
  } catch {
    return undefined;
  }
}
