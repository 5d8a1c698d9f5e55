import { createHash } from "node:crypto";
import type { LeaseRecord } from "../core/lease.ts";
import { MAX_TTL_MS } from "../core/limits.ts";

// The lease file, as docs/lock-file.schema.json and docs/protocol.md section 2
// describe it. Version 2 (the pause-safe commit rule) keeps version 1's
// fields; version 3 adds a checksum, since its holder rewrites it in place
// (a reader may see a torn write, which must read as unreadable, never as
// free). Readers take all three; writers write 3.

/** The version this participant writes. */
export const LEASE_FILE_VERSION = 3;
/** The versions a reader accepts. */
export const READABLE_LEASE_FILE_VERSIONS: readonly number[] = [1, 2, 3];
/** The version-1 counter file (R.lock.fence as a file), still read when converting it. */
export const FENCE_FILE_VERSION = 1;

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function serializeLease(lease: LeaseRecord, renewedAt: number): string {
  const document: Record<string, unknown> = {
    version: LEASE_FILE_VERSION,
    resource: lease.resource,
    holder: lease.holder,
    acquired_at: formatTime(lease.acquiredAt, "down"),
    renewed_at: formatTime(renewedAt, "down"),
    ttl: lease.ttlMs / 1000,
    // Later is safe for others; the holder counts its own time anyway.
    expires_at: formatTime(lease.expiresAt, "up"),
    fencing_token: lease.fencingToken,
    pid: lease.pid,
    hostname: lease.hostname,
    metadata: lease.metadata,
  };
  if (lease.leaseIdHash !== undefined) document.lease_id_sha256 = lease.leaseIdHash;
  return sealLeaseDocument(document);
}

/**
 * A version 3 lease file's text for `document`: compact JSON whose last
 * member is the SHA-256 of everything before it (docs/protocol.md §2). Every
 * renewal of one lease has the same length (times always have 3 fraction
 * digits), so its holder can rewrite the file in place.
 */
export function sealLeaseDocument(document: Record<string, unknown>): string {
  const prefix = JSON.stringify(document).slice(0, -1);
  return `${prefix},"checksum":"${sha256Hex(prefix)}"}\n`;
}

// The checksum member, last, with only JSON whitespace after the object.
const CHECKSUM_TRAILER = /,"checksum":"([0-9a-f]{64})"\}[ \t\r\n]*$/;

/** Why a version 3 file's text fails its checksum, or undefined when it passes. */
function checksumProblem(text: string): string | undefined {
  const m = CHECKSUM_TRAILER.exec(text);
  if (m === null) return "no checksum as its last member (a version 3 file needs one)";
  return sha256Hex(text.slice(0, m.index)) === m[1] ? undefined : "checksum mismatch (a torn or edited file)";
}

function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/**
 * Parses a lease file; a string result says why it is unreadable. `modifiedAt`
 * caps the expiry: no lease outlives its file's mtime by more than the maximum
 * ttl, whatever a hand-edited expires_at says.
 */
export function parseLease(text: string, resource: string, modifiedAt: number): LeaseRecord | string {
  const parsed = parseLeaseFile(text, resource, modifiedAt);
  return typeof parsed === "string" ? parsed : parsed.lease;
}

/** A valid lease file: its lease, and the version it was written in. */
export interface ParsedLeaseFile {
  lease: LeaseRecord;
  version: number;
}

/** parseLease, also saying which version wrote the file. */
export function parseLeaseFile(text: string, resource: string, modifiedAt: number): ParsedLeaseFile | string {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    // Not the parser's message: it quotes the text, and a reason never shows file content.
    return text.trim() === "" ? "the file is empty" : "not JSON";
  }
  if (typeof document !== "object" || document === null || Array.isArray(document)) return "not a JSON object";
  const d = document as Record<string, unknown>;
  if (typeof d.version !== "number" || !READABLE_LEASE_FILE_VERSIONS.includes(d.version)) {
    return `unsupported version (readable: ${READABLE_LEASE_FILE_VERSIONS.join(", ")})`;
  }
  if (d.version === 3) {
    const problem = checksumProblem(text);
    if (problem !== undefined) return problem;
  }
  if (d.resource !== resource) return "resource does not match the file name";
  if (typeof d.holder !== "string") return "holder is not a string";
  const acquiredAt = parseTime(d.acquired_at, "down");
  if (acquiredAt === undefined) return `acquired_at ${DATE_TIME_RULE}`;
  const expiresAt = parseTime(d.expires_at, "up");
  if (expiresAt === undefined) return `expires_at ${DATE_TIME_RULE}`;
  // Optional fields given as null are invalid, as the schema says.
  if (d.renewed_at !== undefined && parseTime(d.renewed_at, "down") === undefined) return `renewed_at ${DATE_TIME_RULE}`;
  if (typeof d.ttl !== "number" || !(d.ttl > 0) || d.ttl * 1000 > MAX_TTL_MS) return "ttl is not a number of seconds in (0, 3600]";
  if (!isPositiveInteger(d.fencing_token)) return "fencing_token is not a positive integer";
  if (!isPositiveInteger(d.pid) && d.pid !== 0) return "pid is not an integer";
  if (typeof d.hostname !== "string") return "hostname is not a string";
  if (d.lease_id_sha256 !== undefined && !(typeof d.lease_id_sha256 === "string" && SHA256_HEX.test(d.lease_id_sha256))) {
    return "lease_id_sha256 is not 64 lowercase hex digits";
  }
  const metadata = parseMetadata(d.metadata);
  if (metadata === undefined) return "metadata is not an object of strings";
  const lease: LeaseRecord = {
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
  return { lease, version: d.version };
}

export function serializeFence(resource: string, fencingToken: number): string {
  return JSON.stringify({ version: FENCE_FILE_VERSION, resource, fencing_token: fencingToken }) + "\n";
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
  if (d.version !== FENCE_FILE_VERSION) return `unsupported version ${JSON.stringify(d.version)}`;
  if (d.resource !== resource) return `resource ${JSON.stringify(d.resource)} does not match the file name`;
  const token = d.fencing_token;
  if (typeof token !== "number" || !Number.isSafeInteger(token) || token < 0) return "fencing_token is not an integer >= 0";
  return token;
}

const DATE_TIME_RULE = "is not a date-time YYYY-MM-DDTHH:MM:SS[.fraction of 1-9 digits] then Z or ±HH:MM, in calendar ranges";

// RFC 3339 section 5.6 with its ranges made exact: 'T' and 'Z' in either case
// (its NOTE), no leap second, a fraction of 1 to 9 digits.
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

/**
 * Milliseconds since the epoch of a protocol date-time, or undefined when it
 * is not one (2026-02-30 or T24:00:00 are not: nothing is rolled over). The
 * fraction is taken to the millisecond, rounded "up" (expires_at: later is
 * safe for others) or "down".
 */
export function parseTime(value: unknown, rounding: "up" | "down"): number | undefined {
  if (typeof value !== "string") return undefined;
  const m = DATE_TIME.exec(value);
  if (m === null) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  let offsetMinutes = 0;
  if (m[8] !== undefined) {
    const offsetHour = Number(m[9]);
    const offsetMinute = Number(m[10]);
    if (offsetHour > 23 || offsetMinute > 59) return undefined;
    offsetMinutes = (m[8] === "-" ? -1 : 1) * (offsetHour * 60 + offsetMinute);
  }
  const fraction = (m[7] ?? "").padEnd(9, "0");
  const subMillisecond = Number(fraction.slice(3)) > 0;
  // Not Date.UTC: it maps years 0-99 to 1900-1999.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, Number(fraction.slice(0, 3)));
  return date.getTime() - offsetMinutes * 60_000 + (rounding === "up" && subMillisecond ? 1 : 0);
}

/** A time as the protocol writes it: UTC, `Z`, milliseconds (a fraction of one rounded as asked). */
function formatTime(ms: number, rounding: "up" | "down"): string {
  return new Date(rounding === "up" ? Math.ceil(ms) : Math.floor(ms)).toISOString();
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

function isPositiveInteger(value: unknown): boolean {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

function parseMetadata(value: unknown): Record<string, string> | undefined {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const entries = Object.entries(value);
  if (entries.some(([, v]) => typeof v !== "string")) return undefined;
  // fromEntries defines own properties: a key "__proto__" stays a key.
  return Object.fromEntries(entries) as Record<string, string>;
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
