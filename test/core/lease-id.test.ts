import { test } from "node:test";
import assert from "node:assert/strict";
import { hashLeaseId, newLeaseId } from "../../src/core/lease-id.ts";

test("lease ids: 43 base64url characters, never starting with '-' (a command line would take it for an option), all distinct", () => {
  const ids = new Set<string>();
  // 1 random id in 64 starts with '-': 5,000 draws miss that with probability ~1e-34.
  for (let i = 0; i < 5_000; i++) {
    const id = newLeaseId();
    assert.match(id, /^[A-Za-z0-9_][A-Za-z0-9_-]{42}$/);
    ids.add(id);
  }
  assert.equal(ids.size, 5_000);
  assert.match(hashLeaseId("x"), /^[0-9a-f]{64}$/);
});
