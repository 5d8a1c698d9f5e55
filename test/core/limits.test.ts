import { test } from "node:test";
import assert from "node:assert/strict";
import { InvalidArgumentError } from "../../src/core/errors.ts";
import {
  DEFAULT_TTL_MS,
  MAX_HOLDER_BYTES,
  MAX_METADATA_ENTRIES,
  MAX_METADATA_TOTAL_BYTES,
  MAX_METADATA_VALUE_BYTES,
  MAX_TTL_MS,
  MAX_WAIT_MS,
  MIN_TTL_MS,
  RESOURCE_NAME_PATTERN,
  validateHolder,
  validateMetadata,
  validateResource,
  validateTtl,
  validateWait,
} from "../../src/core/limits.ts";
import { LockDirLayout } from "../../src/store/lock-dir-layout.ts";

/** Asserts `fn` throws an InvalidArgumentError for `field` whose message contains every fragment. */
function assertRejected(fn: () => unknown, field: string, ...fragments: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`);
    assert.equal(err.code, "INVALID_ARGUMENT");
    assert.equal(err.field, field);
    assert.ok(err.message.startsWith(`${field}: `), `message should name the field: ${err.message}`);
    for (const fragment of fragments) {
      assert.ok(err.message.includes(fragment), `message should contain ${JSON.stringify(fragment)}: ${err.message}`);
    }
    return true;
  });
}

test("the constants are the documented contract", () => {
  assert.equal(DEFAULT_TTL_MS, 30_000);
  assert.equal(MIN_TTL_MS, 1_000);
  assert.equal(MAX_TTL_MS, 3_600_000);
  assert.equal(MAX_WAIT_MS, 86_400_000);
  assert.equal(MAX_HOLDER_BYTES, 256);
  assert.equal(MAX_METADATA_ENTRIES, 32);
  assert.equal(MAX_METADATA_VALUE_BYTES, 1024);
  assert.equal(MAX_METADATA_TOTAL_BYTES, 8192);
});

test("validateResource accepts 1 and 128 characters of the allowed alphabet", () => {
  for (const name of ["a", "Z", "0", "gateway", "A-b_c.d", "x..y", "v1.2.3", "a".repeat(128), "9" + "-".repeat(127)]) {
    assert.equal(validateResource(name), name);
  }
});

test("validateResource rejects 129 characters naming the field and the limit 128", () => {
  assertRejected(() => validateResource("a".repeat(129)), "resource", "129", "128");
  assertRejected(() => validateResource("a".repeat(300)), "resource", "300", "128");
});

test("validateResource rejects path tricks, empty, NUL and leading dots", () => {
  const bad = ["../x", "a/b", "/abs", "a\\b", "", "a\u0000b", "\u0000", ".", "..", ".hidden", "-dash-first", "_under", "sp ace", "tab\t", "é", "a:b", "a*"];
  for (const name of bad) {
    assert.throws(
      () => validateResource(name),
      (err: unknown) => err instanceof InvalidArgumentError && err.field === "resource",
      `should reject ${JSON.stringify(name)}`,
    );
  }
  assertRejected(() => validateResource(""), "resource", "must not be empty");
  assertRejected(() => validateResource("../x"), "resource", JSON.stringify("../x"), "no '/'");
  assertRejected(() => validateResource(".hidden"), "resource", "no leading '.'");
});

test("validateResource names the field it is given", () => {
  assertRejected(() => validateResource("a/b", "prefix"), "prefix");
  assertRejected(() => validateResource("", "prefix"), "prefix", "must not be empty");
});

test("validateHolder: empty becomes anonymous, 256 bytes pass, 257 bytes fail", () => {
  assert.equal(validateHolder(""), "anonymous");
  assert.equal(validateHolder("alice"), "alice");
  assert.equal(validateHolder("h".repeat(256)), "h".repeat(256));
  assertRejected(() => validateHolder("h".repeat(257)), "holder", "257", "256");
});

test("validateHolder counts UTF-8 bytes, not characters", () => {
  // "é" is 2 bytes: 128 of them are exactly 256 bytes, one more "a" is 257.
  assert.equal(validateHolder("é".repeat(128)), "é".repeat(128));
  assertRejected(() => validateHolder("é".repeat(128) + "a"), "holder", "257 bytes", "256 bytes");
  // 129 characters but 258 bytes.
  assertRejected(() => validateHolder("é".repeat(129)), "holder", "258", "256");
});

test("validateHolder rejects control characters", () => {
  for (const holder of ["a\nb", "a\rb", "\u0000", "x\u001b[31m", "del\u007f", "tab\t"]) {
    assertRejected(() => validateHolder(holder), "holder", "control characters");
  }
});

test("validateTtl: default, boundaries 1s and 3600s, just past them rejected", () => {
  assert.equal(validateTtl(undefined), 30_000);
  assert.equal(validateTtl(1_000), 1_000);
  assert.equal(validateTtl(3_600_000), 3_600_000);
  assert.equal(validateTtl(1_000.2), 1_001, "fractions round up");
  assertRejected(() => validateTtl(999), "ttl", "0.999s", "1s to 3600s");
  assertRejected(() => validateTtl(3_600_001), "ttl", "3600.001s", "1s to 3600s");
  assertRejected(() => validateTtl(0), "ttl", "1s to 3600s");
  assertRejected(() => validateTtl(-1_000), "ttl", "1s to 3600s");
  assertRejected(() => validateTtl(Number.NaN), "ttl", "NaN", "1s to 3600s");
  assertRejected(() => validateTtl(Number.POSITIVE_INFINITY), "ttl", "Infinity");
});

test("validateWait: default try-once, boundaries 0 and 24h, just past them rejected", () => {
  assert.equal(validateWait(undefined), 0);
  assert.equal(validateWait(0), 0);
  assert.equal(validateWait(86_400_000), 86_400_000);
  assert.equal(validateWait(0.5), 1, "fractions round up");
  assertRejected(() => validateWait(86_400_001), "wait_timeout", "86400.001s", "0s to 86400s");
  assertRejected(() => validateWait(-1), "wait_timeout", "-0.001s", "0s to 86400s");
  assertRejected(() => validateWait(Number.NaN), "wait_timeout", "NaN");
});

test("validateMetadata: 32 entries pass, 33 fail naming the limit", () => {
  const entries = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));
  assert.deepEqual(validateMetadata({}), {});
  assert.deepEqual(validateMetadata(entries(32)), entries(32));
  assertRejected(() => validateMetadata(entries(33)), "metadata", "33 entries", "32");
});

test("validateMetadata returns a copy", () => {
  const input = { a: "1" };
  const out = validateMetadata(input);
  assert.deepEqual(out, input);
  assert.notEqual(out, input);
});

test("validateMetadata: keys of 1..64 allowed characters pass, 65 or bad characters fail", () => {
  assert.deepEqual(validateMetadata({ ["k".repeat(64)]: "v" }), { ["k".repeat(64)]: "v" });
  assert.deepEqual(validateMetadata({ "a.b/c_d-E9": "v" }), { "a.b/c_d-E9": "v" });
  assertRejected(() => validateMetadata({ ["k".repeat(65)]: "v" }), "metadata", "64");
  assertRejected(() => validateMetadata({ "": "v" }), "metadata", "key");
  assertRejected(() => validateMetadata({ "sp ace": "v" }), "metadata", "key");
  assertRejected(() => validateMetadata({ "nul\u0000": "v" }), "metadata", "key");
});

test("validateMetadata: values of 1024 bytes pass, 1025 fail naming key and limit", () => {
  assert.deepEqual(validateMetadata({ k: "v".repeat(1024) }), { k: "v".repeat(1024) });
  assertRejected(() => validateMetadata({ k: "v".repeat(1025) }), "metadata", '"k"', "1025", "1024");
  // Bytes, not characters: 513 two-byte characters are 1026 bytes.
  assertRejected(() => validateMetadata({ k: "é".repeat(513) }), "metadata", "1026", "1024");
});

test("validateMetadata: 8192 bytes in all pass, 8193 fail naming the limit", () => {
  // 8 entries of a 2-character key and a 1022-byte value: 8 * 1024 = 8192.
  const exact = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`k${i}`, "v".repeat(1022)]));
  assert.deepEqual(validateMetadata(exact), exact);
  const over = { ...exact, k7: "v".repeat(1023) };
  assertRejected(() => validateMetadata(over), "metadata", "8193", "8192");
});

test("the resource name pattern is a whole-string match: no trailing newline, nothing around it", () => {
  for (const name of ["gateway\n", "gateway\r\n", "\ngateway", "gate\nway", "gateway ", "a".repeat(128) + "\n"]) {
    assert.equal(RESOURCE_NAME_PATTERN.test(name), false, JSON.stringify(name));
    assertRejected(() => validateResource(name), "resource");
  }
  assert.equal(RESOURCE_NAME_PATTERN.test("a".repeat(128)), true);
  assert.equal(new LockDirLayout("/tmp/x").resourceOfEntry("gateway\n.lock"), undefined);
  assert.equal(new LockDirLayout("/tmp/x").resourceOfEntry("gateway.lock"), "gateway");
});
