// Property-based tests (fast-check) of the parsers hostile input reaches
// first: the lease-file reader, durations, addresses, the request
// validators, and the auth file. Each may accept or refuse, but only with
// its own typed error, and never quoting what it read where it must not.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseLease, parseFence, serializeLease } from "../../src/store/lease-file-format.ts";
import { DurationSyntaxError, parseDuration } from "../../src/cli/duration.ts";
import { resolveAddress, UsageError } from "../../src/cli/client-options.ts";
import { splitHostPort } from "../../src/http/health-server.ts";
import { isLoopbackHost } from "../../src/config/listen-policy.ts";
import { InvalidArgumentError } from "../../src/core/errors.ts";
import {
  RESOURCE_NAME_PATTERN,
  validateHolder,
  validateLeaseId,
  validateMetadata,
  validateReason,
  validateResource,
  validateResourcePrefix,
  validateTtl,
  validateWait,
} from "../../src/core/limits.ts";
import { AuthFileError, parseAuthFile } from "../../src/auth/auth-file.ts";

/** Runs per property: FUZZ_RUNS for `npm run fuzz`, a quick default in CI. */
const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const params = { numRuns: RUNS };

/** Only `expected` errors may escape `fn`. */
function onlyThrows(fn: () => unknown, expected: new (...args: never[]) => Error): void {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof expected, `unexpected ${(err as Error)?.name}: ${(err as Error)?.message}`);
  }
}

const resourceName = fc.stringMatching(RESOURCE_NAME_PATTERN);
/** Text with a marker inside, to see whether a reason quotes what it read. */
const MARKER = "Zq7xMarkerXq7Z";

test("the lease-file reader never throws, and its reasons never quote the file", () => {
  const text = fc.oneof(
    fc.string(),
    fc.json(),
    fc.anything().map((value) => JSON.stringify(value) ?? ""),
    fc.record({ version: fc.anything(), resource: fc.anything(), holder: fc.anything(), ttl: fc.anything() }).map((d) => JSON.stringify(d)),
  );
  fc.assert(
    fc.property(text, resourceName, fc.integer({ min: 0, max: 2 ** 42 }), (body, resource, mtime) => {
      const withMarker = body.length > 2 ? `${body.slice(0, 1)}${MARKER}${body.slice(1)}` : MARKER + body;
      for (const input of [body, withMarker]) {
        const parsed = parseLease(input, resource, mtime);
        if (typeof parsed === "string") assert.ok(!parsed.includes(MARKER), `reason quotes the file: ${parsed}`);
        else assert.equal(parsed.resource, resource);
        const fence = parseFence(input, resource);
        if (typeof fence === "string") assert.ok(!fence.includes(MARKER));
        else assert.ok(Number.isSafeInteger(fence) && fence >= 0);
      }
    }),
    params,
  );
});

test("a lease the service writes reads back as itself", () => {
  fc.assert(
    fc.property(
      resourceName,
      fc.string({ maxLength: 64 }),
      fc.integer({ min: 1_000, max: 3_600_000 }),
      fc.integer({ min: 1, max: 2 ** 40 }),
      fc.dictionary(fc.stringMatching(/^[a-z]{1,8}$/), fc.string({ maxLength: 16 })),
      (resource, holder, ttlMs, fencingToken, metadata) => {
        const now = 1_800_000_000_000;
        const lease = { resource, holder, fencingToken, acquiredAt: now, expiresAt: now + ttlMs, ttlMs, metadata: { ...metadata }, pid: 7, hostname: "h" };
        const parsed = parseLease(serializeLease(lease, now), resource, now);
        assert.notEqual(typeof parsed, "string", String(parsed));
        assert.deepEqual({ ...(parsed as object) }, { ...lease, leaseIdHash: undefined });
      },
    ),
    params,
  );
});

test("durations: any text parses to a finite non-negative number or a DurationSyntaxError; composed ones add up", () => {
  fc.assert(fc.property(fc.string(), (text) => onlyThrows(() => {
    const ms = parseDuration(text, "--ttl");
    assert.ok(Number.isFinite(ms) && ms >= 0, `${JSON.stringify(text)} → ${ms}`);
  }, DurationSyntaxError)), params);
  fc.assert(
    fc.property(fc.nat(99), fc.nat(59), fc.nat(59), fc.nat(999), (h, m, s, ms) => {
      assert.equal(parseDuration(`${h}h${m}m${s}s${ms}ms`, "--ttl"), ((h * 60 + m) * 60 + s) * 1000 + ms);
      assert.equal(parseDuration(String(s), "--wait"), s * 1000);
    }),
    params,
  );
});

test("addresses: any text is a UsageError or a usable target; host:port forms are accepted", () => {
  fc.assert(fc.property(fc.string(), (text) => onlyThrows(() => resolveAddress(text, {}), UsageError)), params);
  fc.assert(fc.property(fc.string(), (text) => onlyThrows(() => splitHostPort(text), Error)), params);
  const host = fc.oneof(fc.ipV4(), fc.domain(), fc.ipV6().map((v6) => `[${v6}]`));
  fc.assert(
    fc.property(host, fc.integer({ min: 0, max: 65535 }), (h, port) => {
      assert.equal(resolveAddress(`${h}:${port}`, {}), `${h}:${port}`);
      assert.equal(splitHostPort(`${h}:${port}`).port, port);
    }),
    params,
  );
  fc.assert(fc.property(fc.ipV4(), (ip) => assert.equal(isLoopbackHost(ip), ip.startsWith("127."))), params);
});

test("request validators: InvalidArgumentError or a value within the documented limits", () => {
  const text = fc.oneof(fc.string(), fc.string({ unit: "binary", maxLength: 400 }), fc.string({ minLength: 100, maxLength: 2_000 }));
  fc.assert(
    fc.property(text, (value) => {
      onlyThrows(() => assert.match(validateResource(value), RESOURCE_NAME_PATTERN), InvalidArgumentError);
      onlyThrows(() => assert.ok(Buffer.byteLength(validateHolder(value)) <= 256), InvalidArgumentError);
      onlyThrows(() => assert.ok(validateLeaseId(value).length <= 128), InvalidArgumentError);
      onlyThrows(() => assert.ok(validateResourcePrefix(value).length <= 128), InvalidArgumentError);
      onlyThrows(() => assert.ok(Buffer.byteLength(validateReason(value)) <= 1024), InvalidArgumentError);
    }),
    params,
  );
  fc.assert(
    fc.property(fc.oneof(fc.double(), fc.integer()), (ms) => {
      onlyThrows(() => assert.ok(validateTtl(ms) >= 1_000 && validateTtl(ms) <= 3_600_000), InvalidArgumentError);
      onlyThrows(() => assert.ok(validateWait(ms) >= 0), InvalidArgumentError);
    }),
    params,
  );
  fc.assert(
    fc.property(fc.dictionary(fc.string({ maxLength: 80 }), fc.string({ maxLength: 1_200 }), { maxKeys: 40 }), (metadata) =>
      onlyThrows(() => {
        const valid = validateMetadata(metadata);
        assert.ok(Object.keys(valid).length <= 32);
      }, InvalidArgumentError),
    ),
    params,
  );
});

test("auth files: any JSON is an AuthFileError or a policy whose principals all can be matched", () => {
  fc.assert(
    fc.property(fc.oneof(fc.json(), fc.string()), (text) =>
      onlyThrows(() => {
        for (const principal of parseAuthFile(text).principals) {
          assert.ok(principal.tokenSha256 !== undefined || principal.certCommonName !== undefined);
        }
      }, AuthFileError),
    ),
    params,
  );
});
