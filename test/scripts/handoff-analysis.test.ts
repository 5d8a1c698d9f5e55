// How the bench turns timed holds into handoffs (scripts/bench/workloads/handoff.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { analyzeHandoffs } from "../../scripts/bench/workloads/handoff.ts";
import type { Hold } from "../../scripts/bench/protocol.ts";

/** A hold whose release was sent 0.1 ms before its response arrived. */
function hold(contender: string, waitFrom: number, grantAt: number, releaseAnsweredAt: number): Hold {
  return { contender, waitFrom, grantAt, releaseSentAt: releaseAnsweredAt - 0.1, releaseAnsweredAt };
}

test("a queue: each release is followed by the other contender's grant", () => {
  const holds = [
    hold("a", 0, 10, 11),
    hold("b", 5, 12, 13), // 1 ms after a's release response
    hold("a", 11, 13.5, 15), // 0.5 ms after b's
    hold("b", 13, 14.8, 16), // before a's response: negative, counted as 0
  ];
  const result = analyzeHandoffs(holds, 0, 100);
  assert.deepEqual(result.latencies, [1, 0.5, 0]);
  assert.equal(result.handoffs, 3);
  assert.equal(result.negative, 1);
  assert.equal(result.retakes, 0);
  assert.equal(result.grants, 4);
  assert.equal(result.overlaps, 0);
});

test("no queue: releases the releaser took straight back count until a waiter gets the lock", () => {
  const holds = [
    hold("a", 0, 1, 2),
    hold("a", 2, 2.1, 3), // re-take while b sleeps in its backoff
    hold("a", 3, 3.1, 4),
    hold("b", 0.5, 30, 31), // b's poll finally lands
  ];
  const result = analyzeHandoffs(holds, 0, 100);
  // From each of a's releases (b waiting throughout) to b's grant.
  assert.deepEqual(result.latencies, [28, 27, 26]);
  assert.equal(result.handoffs, 1);
  assert.equal(result.retakes, 2);
  assert.equal(result.grants, 4);
});

test("only grants inside the window count, and a release with nobody waiting is no handoff", () => {
  const holds = [
    hold("a", 0, 1, 2),
    hold("b", 3, 4, 5), // b only asked after a had released: no handoff
    hold("a", 4.5, 6, 7),
    hold("b", 6.5, 8, 9), // outside the window
  ];
  const result = analyzeHandoffs(holds, 5, 7);
  assert.deepEqual(result.latencies, [1]); // b's release at 5 → a's grant at 6
  assert.equal(result.handoffs, 1);
  assert.equal(result.grants, 1);
});

test("a grant before the previous holder sent its release is reported as an overlap", () => {
  const holds = [hold("a", 0, 1, 10), { ...hold("b", 0, 5, 12), releaseSentAt: 11 }];
  holds[0] = { ...holds[0]!, releaseSentAt: 9 };
  assert.equal(analyzeHandoffs(holds, 0, 100).overlaps, 1);
});
