import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import fc from "fast-check";
import type { LeaseRecord } from "../../src/core/lease.ts";
import { hashLeaseId } from "../../src/core/lease-id.ts";
import { MAX_TTL_MS } from "../../src/core/limits.ts";
import {
  FENCE_FILE_VERSION,
  LEASE_FILE_VERSION,
  parseFence,
  parseLease,
  parseTime,
  sealLeaseDocument,
  serializeFence,
  serializeLease,
  tokenOfAnyLeaseText,
} from "../../src/store/lease-file-format.ts";
import { assertValidLeaseFile, leaseFileSchemaErrors } from "../helpers/lease-file-schema.ts";
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

/** A valid document as written (version 3) as a plain object without its checksum, to break one field at a time. */
function sampleDocument(): Record<string, unknown> {
  const document = JSON.parse(serializeLease(sampleLease(), T0 + 10_000)) as Record<string, unknown>;
  delete document.checksum;
  return document;
}

/** A file's text for `document`: sealed with a checksum when it says version 3. */
function textOf(document: Record<string, unknown>): string {
  return document.version === 3 ? sealLeaseDocument(document) : JSON.stringify(document);
}

/** A JSON object's text sealed as writers seal it, for texts JSON.stringify cannot make (42.0, 1e2). */
function sealedText(objectText: string): string {
  const prefix = objectText.slice(0, -1);
  return `${prefix},"checksum":"${createHash("sha256").update(prefix).digest("hex")}"}\n`;
}

function parseDocument(document: Record<string, unknown>, resource = "gateway", modifiedAt = T0): LeaseRecord | string {
  return parseLease(textOf(document), resource, modifiedAt);
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
    assert.equal(LEASE_FILE_VERSION, 3);
    assert.match(String(document.checksum), /^[0-9a-f]{64}$/);
    assert.ok(text.endsWith(`,"checksum":"${String(document.checksum)}"}\n`), "the checksum is the last member");
    delete document.checksum;
    assert.deepEqual(document, {
      version: 3,
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
  ["version", [undefined, 4, 0, "1", "3", null, true, 1.5], "version"],
  ["resource", [undefined, "other", "", 5], "resource"],
  ["holder", [undefined, 5, null, ["a"], true], "holder"],
  ["acquired_at", [undefined, "yesterday", "2026-01-09", "2026-13-45T99:00:00Z", 1_767_969_000_000], "acquired_at"],
  ["expires_at", [undefined, "tomorrow", "2026-01-09 14:30:00", "2026-01-09T14:30:00", 1_767_969_030_000], "expires_at"],
  ["ttl", [undefined, 0, -1, 3600.001, "30", null, Number.MAX_VALUE, true, false], "ttl"],
  ["fencing_token", [undefined, 0, -1, 1.5, "42", 2 ** 53, null, true, false, [42], { n: 42 }], "fencing_token"],
  ["pid", [undefined, -1, 1.5, "12", null, true, false], "pid"],
  ["hostname", [undefined, 7, null, false], "hostname"],
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
  assert.equal(FENCE_FILE_VERSION, 1, "the counter file is version 1's; version 2 keeps the counter elsewhere");
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

// ---------------------------------------------------------------- reader rules made exact

test("version 1 and 2 files (no checksum) are read like version 3 ones (the same fields)", () => {
  const v1 = parseDocument({ ...sampleDocument(), version: 1 });
  const v2 = parseDocument({ ...sampleDocument(), version: 2 });
  const v3 = parseDocument(sampleDocument());
  assert.equal(typeof v1, "object", String(v1));
  assert.deepEqual(v1, v3);
  assert.deepEqual(v2, v3);
  // 2.0 is the number 2 in JSON (JavaScript cannot tell them apart).
  const text = JSON.stringify({ ...sampleDocument(), version: 2 }).replace('"version":2', '"version":2.0');
  assert.ok(text.includes('"version":2.0'));
  assert.equal(typeof parseLease(text, "gateway", T0), "object");
  // A checksum member in an older version is just an unknown field.
  assert.equal(typeof parseDocument({ ...sampleDocument(), version: 2, checksum: "not checked" }), "object");
});

// ---------------------------------------------------------------- version 3: the checksum

test("a version 3 file is valid only with its checksum as the last member over exactly the bytes before it", () => {
  const text = serializeLease(sampleLease(), T0 + 10_000);
  assert.equal(typeof parseLease(text, "gateway", T0), "object");
  assert.equal(typeof parseLease(text.trimEnd() + " \r\n\t\n", "gateway", T0), "object", "trailing JSON whitespace is allowed");
  // One byte changed anywhere before the checksum: a torn or edited file.
  const flipped = text.replace('"holder":"ai-dev-kit-process-12345"', '"holder":"ai-dev-kit-process-12346"');
  assertReason(parseLease(flipped, "gateway", T0), "checksum mismatch");
  // A different, well-formed checksum.
  assertReason(parseLease(text.replace(/"checksum":"[0-9a-f]{64}"/, `"checksum":"${"0".repeat(64)}"`), "gateway", T0), "checksum mismatch");
  // Missing, not last, or upper-case hex.
  assertReason(parseLease(JSON.stringify(sampleDocument()), "gateway", T0), "checksum");
  const document = JSON.parse(text) as Record<string, unknown>;
  assertReason(parseLease(JSON.stringify({ checksum: document.checksum, ...sampleDocument() }), "gateway", T0), "checksum");
  assertReason(parseLease(text.replace(/"checksum":"([0-9a-f]{64})"/, (_m, hex: string) => `"checksum":"${hex.toUpperCase()}"`), "gateway", T0), "checksum");
  // Spaces inside the trailer are not the form writers write.
  assertReason(parseLease(text.replace(',"checksum":', ', "checksum": '), "gateway", T0), "checksum");
});

test("a version 3 file caught half-written (torn at any byte) is unreadable, never free", () => {
  const before = serializeLease(sampleLease(), T0 + 10_000);
  const after = serializeLease({ ...sampleLease(), expiresAt: T0 + 40_000 }, T0 + 20_000);
  assert.equal(after.length, before.length, "a renewal has the same length: it can be written in place");
  for (let cut = 1; cut < after.length - 1; cut++) {
    const torn = after.slice(0, cut) + before.slice(cut);
    if (torn === after || torn === before) continue;
    const result = parseLease(torn, "gateway", T0);
    assert.equal(typeof result, "string", `torn at byte ${cut} was read as a lease`);
  }
});

test("renewals of one lease serialize to the same length whatever the times", () => {
  const lease = sampleLease();
  const lengths = new Set<number>();
  for (const at of [T0, T0 + 1, T0 + 999, T0 + 10_000, Date.parse("2099-12-31T23:59:59.999Z")]) {
    lengths.add(serializeLease({ ...lease, expiresAt: at + 31_000 }, at).length);
  }
  assert.equal(lengths.size, 1);
});

test("optional fields given as null make the file unreadable", () => {
  for (const field of ["renewed_at", "metadata", "lease_id_sha256"]) {
    assertReason(parseDocument({ ...sampleDocument(), [field]: null }), field);
  }
});

test("an integer is a JSON number with an integral value; true and false never are", () => {
  // Written as 42.0, 1e2 and 0.0 in the text itself: JSON.parse makes them integers.
  const withText = (field: string, literal: string) => {
    const text = JSON.stringify({ ...sampleDocument(), [field]: 7 }).replace(`"${field}":7`, `"${field}":${literal}`);
    assert.ok(text.includes(`"${field}":${literal}`));
    return parseLease(sealedText(text), "gateway", T0);
  };
  assert.equal((withText("fencing_token", "42.0") as LeaseRecord).fencingToken, 42);
  assert.equal((withText("fencing_token", "1e2") as LeaseRecord).fencingToken, 100);
  assert.equal((withText("pid", "0.0") as LeaseRecord).pid, 0);
  assertReason(withText("fencing_token", "true"), "fencing_token");
  assertReason(withText("fencing_token", "42.5"), "fencing_token");
  assertReason(withText("pid", "false"), "pid");
  assertReason(withText("ttl", "true"), "ttl");
});

// [text, milliseconds when read as expires_at (rounded up) or undefined when unreadable]
const dateTimeCases: Array<[string, number | undefined]> = [
  ["2026-01-09T14:30:00Z", T0],
  ["2026-01-09t14:30:00z", T0],
  ["2026-01-09T14:30:00.000Z", T0],
  ["2026-01-09T14:30:00.5Z", T0 + 500],
  ["2026-01-09T14:30:00.123456789Z", T0 + 124],
  ["2026-01-09T14:30:00.123000000Z", T0 + 123],
  ["2026-01-09T14:30:00.0000001Z", T0 + 1],
  ["2026-01-09T15:30:00+01:00", T0],
  ["2026-01-09T14:00:00-00:30", T0],
  ["2026-01-10T13:30:00+23:00", T0],
  ["2026-01-08T14:31:00-23:59", T0],
  ["2024-02-29T00:00:00Z", Date.parse("2024-02-29T00:00:00Z")],
  ["2000-02-29T00:00:00Z", Date.parse("2000-02-29T00:00:00Z")],
  ["2026-12-31T23:59:59.999Z", Date.parse("2026-12-31T23:59:59.999Z")],
  ["0001-01-01T00:00:00Z", -62_135_596_800_000],
  ["0099-06-01T00:00:00Z", Date.parse("0099-06-01T00:00:00.000Z")],
  ["9999-12-31T23:59:59Z", 253_402_300_799_000],
  // Unreadable: out of the calendar's ranges, never rolled over.
  ["2026-02-30T00:00:00Z", undefined],
  ["2026-02-29T00:00:00Z", undefined],
  ["1900-02-29T00:00:00Z", undefined],
  ["2026-04-31T00:00:00Z", undefined],
  ["2026-01-09T24:00:00Z", undefined],
  ["2026-01-09T23:60:00Z", undefined],
  ["2026-12-31T23:59:60Z", undefined],
  ["2026-00-09T00:00:00Z", undefined],
  ["2026-13-09T00:00:00Z", undefined],
  ["2026-01-00T00:00:00Z", undefined],
  ["2026-01-32T00:00:00Z", undefined],
  ["0000-01-01T00:00:00Z", undefined],
  ["2026-01-09T14:30:00+24:00", undefined],
  ["2026-01-09T14:30:00+01:60", undefined],
  // Unreadable: the wrong shape.
  ["2026-01-09T14:30:00.Z", undefined],
  ["2026-01-09T14:30:00.1234567891Z", undefined],
  ["2026-01-09T14:30:00", undefined],
  ["2026-01-09 14:30:00Z", undefined],
  ["2026-01-09T14:30Z", undefined],
  ["2026-1-09T14:30:00Z", undefined],
  ["+02026-01-09T14:30:00Z", undefined],
  ["2026-01-09T14:30:00+0100", undefined],
  ["2026-01-09T14:30:00+01", undefined],
  ["2026-01-09T14:30:00Z\n", undefined],
  [" 2026-01-09T14:30:00Z", undefined],
  ["２０２６-01-09T14:30:00Z", undefined],
];

test("date-times: exact shape and calendar ranges, 1 to 9 fraction digits, expires_at rounded up", async () => {
  for (const [text, expected] of dateTimeCases) {
    assert.equal(parseTime(text, "up"), expected, `parseTime(${JSON.stringify(text)}, "up")`);
    const result = parseDocument({ ...sampleDocument(), expires_at: text }, "gateway", Number.POSITIVE_INFINITY);
    if (expected === undefined) {
      assertReason(result, "expires_at");
      assertReason(parseDocument({ ...sampleDocument(), acquired_at: text }), "acquired_at");
      assertReason(parseDocument({ ...sampleDocument(), renewed_at: text }), "renewed_at");
    } else {
      assert.equal((result as LeaseRecord).expiresAt, expected, text);
    }
    // The schema agrees with the reader on every case.
    const schemaErrors = await leaseFileSchemaErrors(JSON.parse(textOf({ ...sampleDocument(), expires_at: text })));
    assert.equal(schemaErrors === undefined, expected !== undefined, `schema on ${JSON.stringify(text)}: ${schemaErrors}`);
  }
  // Other times are rounded down.
  assert.equal(parseTime("2026-01-09T14:30:00.0000001Z", "down"), T0);
  assert.equal((parseDocument({ ...sampleDocument(), acquired_at: "2026-01-09T14:30:00.9999Z" }) as LeaseRecord).acquiredAt, T0 + 999);
  assert.equal(parseTime(null, "up"), undefined);
  assert.equal(parseTime(T0, "up"), undefined);
});

test("a 2026-02-30 or T24:00:00 expiry makes the file unreadable, not expired (the issue's reproduction)", () => {
  for (const expires of ["2026-02-30T00:00:00Z", "2026-01-09T24:00:00Z"]) {
    const result = parseDocument({ ...sampleDocument(), expires_at: expires });
    assertReason(result, "expires_at");
  }
});

test("serializing rounds expires_at up and the other times down to the millisecond", () => {
  const lease = sampleLease({ acquiredAt: T0 + 0.7, expiresAt: T0 + 30_000.2 });
  const document = JSON.parse(serializeLease(lease, T0 + 10_000.9)) as Record<string, unknown>;
  assert.equal(document.acquired_at, "2026-01-09T14:30:00.000Z");
  assert.equal(document.renewed_at, "2026-01-09T14:30:10.000Z");
  assert.equal(document.expires_at, "2026-01-09T14:30:30.001Z");
});

test("the fencing token of any JSON object counts, valid lease file or not", () => {
  const cases: Array<[string, number | undefined]> = [
    [serializeLease(sampleLease(), T0), 42],
    ['{"fencing_token": 7}', 7],
    ['{"version": 9, "fencing_token": 7, "expires_at": "2026-02-30T00:00:00Z"}', 7],
    ['{"fencing_token": 7.0}', 7],
    [`{"fencing_token": ${Number.MAX_SAFE_INTEGER}}`, Number.MAX_SAFE_INTEGER],
    ['{"fencing_token": 0}', undefined],
    ['{"fencing_token": -3}', undefined],
    ['{"fencing_token": 1.5}', undefined],
    ['{"fencing_token": "7"}', undefined],
    ['{"fencing_token": true}', undefined],
    ['{"fencing_token": null}', undefined],
    [`{"fencing_token": ${2 ** 53}}`, undefined],
    ['{"nested": {"fencing_token": 7}}', undefined],
    ['[{"fencing_token": 7}]', undefined],
    ["7", undefined],
    ["null", undefined],
    ["", undefined],
    ['{"fencing_token": 7', undefined],
    ["\u0000\u00ff", undefined],
  ];
  for (const [text, expected] of cases) assert.equal(tokenOfAnyLeaseText(text), expected, JSON.stringify(text));
});

test("a metadata key __proto__ stays a key", () => {
  const lease = sampleLease({ metadata: JSON.parse('{"__proto__": "x", "a": "b"}') as Record<string, string> });
  const parsed = parseLease(serializeLease(lease, T0), "gateway", T0) as LeaseRecord;
  assert.deepEqual(Object.entries(parsed.metadata), [["__proto__", "x"], ["a", "b"]]);
});

// ---------------------------------------------------------------- properties (fast-check)

const MIN_MS = Date.parse("0001-01-01T00:00:00.000Z");
const MAX_MS = Date.parse("9999-12-31T23:59:59.999Z");

const leaseArbitrary: fc.Arbitrary<LeaseRecord> = fc
  .record({
    resource: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/),
    holder: fc.string({ maxLength: 40, unit: "binary" }),
    fencingToken: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    acquiredAt: fc.integer({ min: MIN_MS, max: MAX_MS - MAX_TTL_MS }),
    ttlMs: fc.integer({ min: 1, max: MAX_TTL_MS }),
    extraMs: fc.integer({ min: 0, max: MAX_TTL_MS }),
    metadata: fc.dictionary(
      fc.oneof(fc.stringMatching(/^[A-Za-z0-9._/-]{1,64}$/), fc.constantFrom("__proto__", "constructor")),
      fc.string({ maxLength: 30, unit: "binary" }),
      { maxKeys: 5 },
    ),
    leaseIdHash: fc.option(fc.stringMatching(/^[0-9a-f]{64}$/), { nil: undefined }),
    pid: fc.integer({ min: 0, max: 2 ** 31 }),
    hostname: fc.string({ maxLength: 30 }),
  })
  // A plain object, as parsing gives (fast-check's dictionaries have no prototype).
  .map(({ extraMs, metadata, ...lease }) => ({ ...lease, metadata: Object.fromEntries(Object.entries(metadata)), expiresAt: lease.acquiredAt + extraMs }));

test("property: any valid record serializes to a schema-valid file and parses back to itself", async () => {
  await fc.assert(
    fc.asyncProperty(leaseArbitrary, fc.integer({ min: 0, max: MAX_TTL_MS }), async (lease, renewOffset) => {
      const text = serializeLease(lease, lease.acquiredAt + renewOffset);
      assert.deepEqual(parseLease(text, lease.resource, lease.expiresAt), lease);
      assert.equal(await leaseFileSchemaErrors(JSON.parse(text)), undefined);
      assert.equal(tokenOfAnyLeaseText(text), lease.fencingToken);
    }),
    { numRuns: 300 },
  );
});

const notAString = fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 2 }), fc.object({ maxDepth: 1 }));
const notANumber = fc.oneof(fc.string(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 2 }), fc.object({ maxDepth: 1 }));
/** A date-time with one part out of range or malformed. */
const badDateTime = fc.oneof(
  fc.constantFrom(...dateTimeCases.filter(([, ms]) => ms === undefined).map(([text]) => text)),
  fc.tuple(fc.integer({ min: 2000, max: 2100 }), fc.constantFrom(2, 4, 6, 9, 11), fc.integer({ min: 31, max: 99 })).map(
    ([y, m, d]) => `${y}-${String(m).padStart(2, "0")}-${d}T00:00:00Z`,
  ),
  fc.integer({ min: 24, max: 99 }).map((h) => `2026-01-09T${h}:00:00Z`),
  fc.integer({ min: 10, max: 30 }).map((digits) => `2026-01-09T00:00:00.${"1".repeat(digits)}Z`),
  fc.string({ maxLength: 30 }),
);
const invalidValues: Record<string, fc.Arbitrary<unknown>> = {
  version: fc.oneof(fc.integer().filter((v) => v < 1 || v > 3), fc.double().filter((v) => ![1, 2, 3].includes(v)), notANumber),
  resource: fc.oneof(fc.string().filter((v) => v !== "gateway"), notAString),
  holder: notAString,
  acquired_at: fc.oneof(badDateTime, notAString),
  renewed_at: fc.oneof(badDateTime, notAString),
  expires_at: fc.oneof(badDateTime, notAString),
  ttl: fc.oneof(fc.double({ max: 0, noNaN: true }), fc.double({ min: 3600.000001 }), fc.constant(Number.NaN), notANumber),
  fencing_token: fc.oneof(
    fc.integer({ max: 0 }),
    fc.double().filter((v) => !(Number.isSafeInteger(v) && v > 0)),
    fc.constant(2 ** 53),
    notANumber,
  ),
  pid: fc.oneof(fc.integer({ max: -1 }), fc.double().filter((v) => !(Number.isSafeInteger(v) && v >= 0)), notANumber),
  hostname: notAString,
  lease_id_sha256: fc.oneof(fc.string().filter((v) => !/^[0-9a-f]{64}$/.test(v)), notAString),
  metadata: fc.oneof(
    fc.constant(null),
    fc.string(),
    fc.integer(),
    fc.boolean(),
    fc.array(fc.string(), { maxLength: 2 }),
    fc.dictionary(fc.string(), notAString, { minKeys: 1, maxKeys: 3 }),
  ),
};

test("property: any single field changed to an invalid value makes the file unreadable, naming the field", () => {
  fc.assert(
    fc.property(fc.constantFrom(...Object.keys(invalidValues)).chain((field) => fc.tuple(fc.constant(field), invalidValues[field]!)), ([field, value]) => {
      // Through JSON text, as a file would be: NaN becomes null, -0 becomes 0.
      const text = textOf({ ...sampleDocument(), [field]: value });
      const result = parseLease(text, "gateway", T0);
      assert.equal(typeof result, "string", `${field} = ${JSON.stringify(value)} was read as valid`);
      assert.ok((result as string).includes(field), `the reason names ${field}: ${String(result)}`);
    }),
    { numRuns: 1500 },
  );
});

test("property: random bytes and random JSON never read as a lease, and never throw", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
      assert.equal(typeof parseLease(Buffer.from(bytes).toString("utf8"), "gateway", T0), "string");
    }),
    { numRuns: 1000 },
  );
  fc.assert(
    fc.property(fc.jsonValue(), (value) => {
      assert.equal(typeof parseLease(JSON.stringify(value) ?? "", "gateway", T0), "string");
    }),
    { numRuns: 1000 },
  );
});

test("property: times round-trip through the file format to the millisecond", () => {
  fc.assert(
    fc.property(fc.integer({ min: MIN_MS, max: MAX_MS }), fc.double({ min: 0, max: 0.999, noNaN: true }), (ms, fraction) => {
      assert.equal(parseTime(new Date(ms).toISOString(), "up"), ms);
      assert.equal(parseTime(new Date(ms).toISOString(), "down"), ms);
      const lease = sampleLease({ acquiredAt: ms, expiresAt: Math.min(ms + fraction, MAX_MS) });
      const parsed = parseLease(serializeLease(lease, ms), "gateway", ms) as LeaseRecord;
      assert.equal(parsed.acquiredAt, ms);
      // === since -0.5 rounds up to -0, which is 0.
      assert.ok(parsed.expiresAt === Math.ceil(lease.expiresAt), `expires_at ${lease.expiresAt} rounds up, never down: ${parsed.expiresAt}`);
    }),
    { numRuns: 1000 },
  );
});

test("property: any date-time made of parts reads as the instant they name, or is unreadable when a part is out of range", async () => {
  const part = (min: number, max: number) => fc.integer({ min, max });
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        year: part(0, 9999),
        month: part(0, 13),
        day: part(0, 32),
        hour: part(0, 25),
        minute: part(0, 60),
        second: part(0, 60),
        fraction: fc.option(fc.stringMatching(/^[0-9]{1,9}$/), { nil: undefined }),
        offset: fc.option(fc.tuple(fc.constantFrom("+", "-"), part(0, 24), part(0, 60)), { nil: undefined }),
        lowerCase: fc.boolean(),
      }),
      async (p) => {
        const pad = (n: number, width = 2) => String(n).padStart(width, "0");
        const zone = p.offset === undefined ? "Z" : `${p.offset[0]}${pad(p.offset[1])}:${pad(p.offset[2])}`;
        let text = `${pad(p.year, 4)}-${pad(p.month)}-${pad(p.day)}T${pad(p.hour)}:${pad(p.minute)}:${pad(p.second)}${p.fraction === undefined ? "" : `.${p.fraction}`}${zone}`;
        if (p.lowerCase) text = text.toLowerCase();
        // Independently: a date is in range when Date does not roll it over.
        const rolled = new Date(Date.UTC(2000, p.month - 1, p.day));
        const leap = p.year % 4 === 0 && (p.year % 100 !== 0 || p.year % 400 === 0);
        const inRange =
          p.year >= 1 &&
          p.month >= 1 &&
          p.month <= 12 &&
          p.day >= 1 &&
          rolled.getUTCMonth() === p.month - 1 &&
          !(p.month === 2 && p.day === 29 && !leap) &&
          p.hour <= 23 &&
          p.minute <= 59 &&
          p.second <= 59 &&
          (p.offset === undefined || (p.offset[1] <= 23 && p.offset[2] <= 59));
        const got = parseTime(text, "up");
        if (!inRange) {
          assert.equal(got, undefined, text);
        } else {
          // Date.parse takes the ECMAScript form (exactly 3 fraction digits) of the same instant.
          const digits = (p.fraction ?? "").padEnd(9, "0");
          const reference = Date.parse(`${pad(p.year, 4)}-${pad(p.month)}-${pad(p.day)}T${pad(p.hour)}:${pad(p.minute)}:${pad(p.second)}.${digits.slice(0, 3)}${zone}`);
          assert.ok(!Number.isNaN(reference), text);
          assert.equal(got, reference + (Number(digits.slice(3)) > 0 ? 1 : 0), text);
        }
        const schemaErrors = await leaseFileSchemaErrors(JSON.parse(textOf({ ...sampleDocument(), acquired_at: text })));
        assert.equal(schemaErrors === undefined, inRange, `the schema agrees on ${text}: ${schemaErrors}`);
      },
    ),
    { numRuns: 1500 },
  );
});
