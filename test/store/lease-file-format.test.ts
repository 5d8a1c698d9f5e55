import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { LeaseRecord } from "../../src/core/lease.ts";
import { hashLeaseId } from "../../src/core/lease-id.ts";
import {
  LEASE_FILE_VERSION,
  parseFence,
  parseLease,
  serializeFence,
  serializeLease,
} from "../../src/store/lease-file-format.ts";
import { assertValidLeaseFile } from "../helpers/lease-file-schema.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

const T0 = Date.parse("2026-01-09T14:30:00.000Z");

function sampleLease(overrides: Partial<LeaseRecord> = {}): LeaseRecord {
  return {
    resource: "gateway",
    holder: "ai-dev-kit-process-12345",
    fencingToken: 42,
    acquiredAt: T0,
    expiresAt: T0 + 30_000,
    ttlMs: 30_000,
    metadata: { purpose: "nightly", "team/owner": "infra" },
    leaseIdHash: hashLeaseId("some-lease-id"),
    pid: 12345,
    hostname: "build-7",
    ...overrides,
  };
}

/** A valid version-1 document as a plain object, to break one field at a time. */
function sampleDocument(): Record<string, unknown> {
  return JSON.parse(serializeLease(sampleLease(), T0 + 10_000)) as Record<string, unknown>;
}

function parseDocument(document: Record<string, unknown>, resource = "gateway", modifiedAt = T0): LeaseRecord | string {
  return parseLease(JSON.stringify(document), resource, modifiedAt);
}

function assertReason(result: LeaseRecord | string, fragment: string): void {
  assert.equal(typeof result, "string", `expected a reason, got ${JSON.stringify(result)}`);
  assert.ok((result as string).includes(fragment), `reason should mention ${JSON.stringify(fragment)}: ${String(result)}`);
}

test("serialize then parse returns the same lease", () => {
  const lease = sampleLease();
  const text = serializeLease(lease, T0 + 10_000);
  assert.deepEqual(parseLease(text, "gateway", T0 + 10_000), lease);
});

test("round trip without lease_id_sha256, without metadata entries, with a fractional ttl", () => {
  const lease = sampleLease({ leaseIdHash: undefined, metadata: {}, ttlMs: 1_500, expiresAt: T0 + 1_500, pid: 0 });
  const text = serializeLease(lease, T0);
  const document = JSON.parse(text) as Record<string, unknown>;
  assert.equal("lease_id_sha256" in document, false, "an absent hash is not written");
  assert.equal(document.ttl, 1.5);
  assert.deepEqual(parseLease(text, "gateway", T0), lease);
});

test("the serialized document has the documented fields and matches the schema", async () => {
  const dir = await makeTempDir();
  try {
    const lease = sampleLease();
    const text = serializeLease(lease, T0 + 10_000);
    assert.ok(text.endsWith("\n"));
    const path = join(dir.path, "gateway.lock");
    await writeFile(path, text);
    const document = await assertValidLeaseFile(path);
    assert.deepEqual(document, {
      version: 1,
      resource: "gateway",
      holder: "ai-dev-kit-process-12345",
      acquired_at: "2026-01-09T14:30:00.000Z",
      renewed_at: "2026-01-09T14:30:10.000Z",
      ttl: 30,
      expires_at: "2026-01-09T14:30:30.000Z",
      fencing_token: 42,
      pid: 12345,
      hostname: "build-7",
      metadata: { purpose: "nightly", "team/owner": "infra" },
      lease_id_sha256: hashLeaseId("some-lease-id"),
    });
  } finally {
    await dir.remove();
  }
});

test("a minimal document written by another participant parses (optional fields absent, unknown fields ignored)", () => {
  const document: Record<string, unknown> = {
    version: 1,
    resource: "gateway",
    holder: "python",
    acquired_at: "2026-01-09T14:30:00Z",
    ttl: 30,
    expires_at: "2026-01-09T15:30:00+01:00",
    fencing_token: 7,
    pid: 4242,
    hostname: "box",
    something_new: { nested: true },
  };
  const parsed = parseDocument(document);
  assert.equal(typeof parsed, "object");
  const lease = parsed as LeaseRecord;
  assert.equal(lease.expiresAt, Date.parse("2026-01-09T14:30:00Z"), "offsets are honoured");
  assert.deepEqual(lease.metadata, {});
  assert.equal(lease.leaseIdHash, undefined);
  assert.equal(lease.fencingToken, 7);
});

test("expires_at is capped at the file's mtime plus the maximum ttl", () => {
  const document = { ...sampleDocument(), expires_at: "2100-01-01T00:00:00.000Z" };
  const lease = parseDocument(document, "gateway", T0) as LeaseRecord;
  assert.equal(typeof lease, "object");
  assert.equal(lease.expiresAt, T0 + 3_600_000);
  // A normal expires_at below the cap is untouched.
  assert.equal((parseDocument(sampleDocument(), "gateway", T0) as LeaseRecord).expiresAt, T0 + 30_000);
});

test("unparseable text gives a reason, never a throw", () => {
  assertReason(parseLease("", "gateway", T0), "empty");
  assertReason(parseLease("  \n", "gateway", T0), "empty");
  assertReason(parseLease('{"version":1,"reso', "gateway", T0), "not JSON");
  assertReason(parseLease("\u0000\u00ff\u0001garbage", "gateway", T0), "not JSON");
  assertReason(parseLease("[1,2]", "gateway", T0), "not a JSON object");
  assertReason(parseLease("null", "gateway", T0), "not a JSON object");
  assertReason(parseLease("42", "gateway", T0), "not a JSON object");
  assertReason(parseLease('"text"', "gateway", T0), "not a JSON object");
});

// Each required field: [name, invalid values (undefined = missing), reason fragment]
const requiredFieldCases: Array<[string, unknown[], string]> = [
  ["version", [undefined, 2, 0, "1", null], "version"],
  ["resource", [undefined, "other", "", 5], "resource"],
  ["holder", [undefined, 5, null, ["a"]], "holder"],
  ["acquired_at", [undefined, "yesterday", "2026-01-09", "2026-13-45T99:00:00Z", 1_767_969_000_000], "acquired_at"],
  ["expires_at", [undefined, "tomorrow", "2026-01-09 14:30:00", "2026-01-09T14:30:00", 1_767_969_030_000], "expires_at"],
  ["ttl", [undefined, 0, -1, 3600.001, "30", null, Number.MAX_VALUE], "ttl"],
  ["fencing_token", [undefined, 0, -1, 1.5, "42", 2 ** 53, null], "fencing_token"],
  ["pid", [undefined, -1, 1.5, "12", null], "pid"],
  ["hostname", [undefined, 7, null], "hostname"],
];

for (const [field, values, fragment] of requiredFieldCases) {
  test(`a missing or wrong ${field} makes the file unreadable with a reason`, () => {
    for (const value of values) {
      const document = sampleDocument();
      if (value === undefined) delete document[field];
      else document[field] = value;
      const result = parseDocument(document);
      assertReason(result, fragment);
    }
  });
}

test("optional fields that are present must be well formed", () => {
  for (const hash of ["ABC", "A".repeat(64), "g".repeat(64), "a".repeat(63), 5, null]) {
    assertReason(parseDocument({ ...sampleDocument(), lease_id_sha256: hash }), "lease_id_sha256");
  }
  for (const renewed of ["yesterday", 5, null, "2026-01-09"]) {
    assertReason(parseDocument({ ...sampleDocument(), renewed_at: renewed }), "renewed_at");
  }
  for (const metadata of [null, "x", [1], { a: 1 }, { a: null }, { a: "ok", b: { c: "d" } }]) {
    assertReason(parseDocument({ ...sampleDocument(), metadata }), "metadata");
  }
});

test("boundary values that are valid parse", () => {
  const ok = (patch: Record<string, unknown>) => {
    const result = parseDocument({ ...sampleDocument(), ...patch });
    assert.equal(typeof result, "object", `${JSON.stringify(patch)} should parse: ${String(result)}`);
    return result as LeaseRecord;
  };
  assert.equal(ok({ ttl: 3600 }).ttlMs, 3_600_000);
  assert.equal(ok({ ttl: 0.001 }).ttlMs, 1);
  assert.equal(ok({ pid: 0 }).pid, 0);
  assert.equal(ok({ fencing_token: Number.MAX_SAFE_INTEGER }).fencingToken, Number.MAX_SAFE_INTEGER);
  assert.equal(ok({ holder: "" }).holder, "");
  // RFC 3339 allows a lower-case 't' and 'z'.
  assert.equal(ok({ acquired_at: "2026-01-09t14:30:00z" }).acquiredAt, T0);
  assert.equal(ok({ expires_at: "2026-01-09t14:30:30.000z" }).expiresAt, T0 + 30_000);
  assert.equal(typeof ok({ renewed_at: "2026-01-09T14:30:10+02:00" }), "object");
});

test("fence documents round trip and reject anything else", () => {
  assert.equal(LEASE_FILE_VERSION, 1);
  const text = serializeFence("gateway", 42);
  assert.deepEqual(JSON.parse(text), { version: 1, resource: "gateway", fencing_token: 42 });
  assert.equal(parseFence(text, "gateway"), 42);
  assert.equal(parseFence(serializeFence("gateway", Number.MAX_SAFE_INTEGER), "gateway"), Number.MAX_SAFE_INTEGER);
  assert.equal(parseFence('{"version":1,"resource":"gateway","fencing_token":0}', "gateway"), 0, "0: nothing issued yet");
  assert.equal(parseFence('{"version":1,"resource":"gateway","fencing_token":3,"extra":true}', "gateway"), 3);
  for (const bad of [
    "",
    "garbage",
    '{"version":1,"resou',
    serializeFence("other", 42),
    '{"version":1,"resource":"gateway","fencing_token":-3}',
    '{"version":2,"resource":"gateway","fencing_token":3}',
    '{"resource":"gateway","fencing_token":3}',
    '{"version":1,"resource":"gateway","fencing_token":1.5}',
    '{"version":1,"resource":"gateway","fencing_token":"42"}',
    '{"version":1,"resource":"gateway"}',
    "null",
    "[]",
  ]) {
    assert.equal(typeof parseFence(bad, "gateway"), "string", `should reject ${JSON.stringify(bad)}`);
  }
});
