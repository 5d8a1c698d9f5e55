import { test } from "node:test";
import assert from "node:assert/strict";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import * as server from "../../src/grpc/status-map.ts";
import * as client from "../../src/client/status-errors.ts";
import { InvalidArgumentError as CoreInvalidArgument, ResourceBusyError as CoreBusy } from "../../src/core/errors.ts";
import {
  InvalidArgumentError,
  LeaseLostError,
  LockClientError,
  ResourceBusyError,
  UnavailableError,
  WatcherTooSlowError,
} from "../../src/client/errors.ts";
import { WatcherTooSlowError as CoreWatcherTooSlow } from "../../src/core/errors.ts";

// The service's structured trailing metadata and the client's reading of it,
// end to end without a network: status-map.ts → errorFromStatus. (Both use
// the keys of src/grpc/error-metadata.ts.)

function roundTrip(err: unknown, resource?: string): LockClientError {
  const partial = server.toServiceError(err);
  const serviceError = Object.assign(new Error(partial.details), {
    code: partial.code!,
    details: partial.details!,
    metadata: partial.metadata ?? new Metadata(),
  }) as ServiceError;
  return client.errorFromStatus(serviceError, resource);
}

test("busy: holder (any UTF-8) and expiry travel as metadata", () => {
  const expiresAt = Date.parse("2030-01-02T03:04:05.678Z");
  const err = roundTrip(new CoreBusy("gateway", 'ü "quoted" ✓', expiresAt, 2, "tried once"), "gateway");
  assert.ok(err instanceof ResourceBusyError);
  assert.equal(err.holder, 'ü "quoted" ✓');
  assert.equal(err.expiresAt?.getTime(), expiresAt);
  assert.equal(err.resource, "gateway");
  assert.equal(err.code, status.ABORTED);
  assert.match(err.message, /is held by/);
});

test("busy without a known holder: no holder, no expiry", () => {
  const err = roundTrip(new CoreBusy("gateway", undefined, undefined, 0, "tried once"), "gateway");
  assert.ok(err instanceof ResourceBusyError);
  assert.equal(err.holder, undefined);
  assert.equal(err.expiresAt, undefined);
});

test("busy from a service without the metadata: parsed from the message", () => {
  const err = client.errorFromStatus(
    Object.assign(new Error("x"), {
      code: status.ABORTED,
      details: 'resource "r" is held by "old: holder" until 2030-01-02T03:04:05.678Z (1 waiting): tried once',
      metadata: new Metadata(),
    }) as ServiceError,
    "r",
  );
  assert.ok(err instanceof ResourceBusyError);
  assert.equal(err.holder, "old: holder");
  assert.equal(err.expiresAt?.toISOString(), "2030-01-02T03:04:05.678Z");
});

test("the other statuses", () => {
  const invalid = roundTrip(new CoreInvalidArgument("ttl", "is 0.5s; allowed is 1s to 3600s"));
  assert.ok(invalid instanceof InvalidArgumentError && invalid.field === "ttl");
  const make = (code: status) =>
    client.errorFromStatus(Object.assign(new Error("m"), { code, details: "m", metadata: new Metadata() }) as ServiceError, "r");
  assert.ok(make(status.UNAVAILABLE) instanceof UnavailableError);
  const notFound = make(status.NOT_FOUND);
  assert.ok(notFound instanceof LeaseLostError && notFound.reason === "expired");
  const internal = make(status.INTERNAL);
  assert.equal(internal.constructor, LockClientError);
  assert.equal(internal.code, status.INTERNAL);
});

test("a watcher that fell behind: RESOURCE_EXHAUSTED, WatcherTooSlowError saying to re-open", () => {
  const err = roundTrip(new CoreWatcherTooSlow(4096));
  assert.ok(err instanceof WatcherTooSlowError, String(err));
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  assert.match(err.message, /more than 4096 events were queued for it; open a new Watch/);
});
