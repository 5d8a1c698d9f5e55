import { test } from "node:test";
import assert from "node:assert/strict";
import { mapUnordered } from "../../src/grpc/map-unordered.ts";

/** A promise with its resolve/reject, to finish work items in a chosen order. */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (err: Error) => void } {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

async function* items<T>(values: T[]): AsyncIterable<T> {
  yield* values;
}

test("results come in the order their work finishes", async () => {
  const pending = new Map([1, 2, 3].map((n) => [n, deferred<string>()]));
  const results: string[] = [];
  const arrived = () => new Promise<void>((resolve) => (onResult = resolve));
  let onResult: () => void = () => {};
  const consumed = (async () => {
    for await (const result of mapUnordered(items([1, 2, 3]), 8, (n) => pending.get(n)!.promise)) {
      results.push(result);
      onResult();
    }
  })();
  for (const [n, name] of [[3, "three"], [1, "one"], [2, "two"]] as const) {
    const next = arrived();
    pending.get(n)!.resolve(name);
    await next;
  }
  await consumed;
  assert.deepEqual(results, ["three", "one", "two"]);
});

test("at most `limit` items are in flight", async () => {
  let inFlight = 0;
  let most = 0;
  const results: number[] = [];
  for await (const n of mapUnordered(items([...Array(20).keys()]), 3, async (n) => {
    most = Math.max(most, ++inFlight);
    await new Promise((resolve) => setImmediate(resolve));
    inFlight--;
    return n;
  })) {
    results.push(n);
  }
  assert.equal(most, 3);
  assert.deepEqual(results.sort((a, b) => a - b), [...Array(20).keys()]);
});

test("a failure ends the iteration with its error", async () => {
  await assert.rejects(
    (async () => {
      for await (const _ of mapUnordered(items([1, 2]), 4, async (n) => {
        if (n === 2) throw new Error("store failed");
        return n;
      })) {
        // drain
      }
    })(),
    /store failed/,
  );
});

test("stopping early ends the source", async () => {
  let finished = false;
  async function* endless(): AsyncIterable<number> {
    try {
      for (let n = 0; ; n++) yield n;
    } finally {
      finished = true;
    }
  }
  for await (const n of mapUnordered(endless(), 2, async (n) => n)) {
    if (n >= 5) break;
  }
  assert.equal(finished, true);
});
