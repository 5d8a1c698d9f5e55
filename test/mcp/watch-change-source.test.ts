// WatchLockChangeSource: locks://status subscribers hear of changes from the
// service's Watch stream. Driven here by a stream the test feeds, on a manual
// clock (the MCP e2e test drives it with the real service's Watch): the
// snapshot is the baseline, renewals are no change, a broken stream is opened
// again a second later and its new snapshot counts as a change, the last
// subscriber's leaving ends the stream, and a service without Watch
// (UNIMPLEMENTED) is followed by the fallback source.
import { test } from "node:test";
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { LockClientError, type LockEventInfo } from "../../src/client/index.ts";
import type { LockEventType } from "../../src/core/lock-events.ts";
import { WatchLockChangeSource, type LockChangeSource } from "../../src/mcp/lock-change-source.ts";
import { ManualClock, settle } from "../helpers/manual-clock.ts";

function event(type: LockEventType, resource = "r"): LockEventInfo {
  return { type, resource, state: "held", holder: "h", fencingToken: 1n, acquiredAt: undefined, expiresAt: undefined, ttl: undefined, waiters: 0, time: new Date(0) };
}

/** A Watch stream per open; the test pushes events into the latest one, or ends or fails it. */
class FedWatch {
  opened = 0;
  signals: AbortSignal[] = [];
  private push: ((item: LockEventInfo | Error | "end") => void) | undefined;

  watch = (signal: AbortSignal): AsyncIterable<LockEventInfo> => {
    this.opened++;
    this.signals.push(signal);
    const queue: Array<LockEventInfo | Error | "end"> = [];
    let wake: (() => void) | undefined;
    this.push = (item) => {
      queue.push(item);
      wake?.();
    };
    signal.addEventListener("abort", () => this.push?.("end"), { once: true });
    return (async function* () {
      for (;;) {
        while (queue.length === 0) await new Promise<void>((resolve) => (wake = resolve));
        const item = queue.shift()!;
        if (item === "end") return;
        if (item instanceof Error) throw item;
        yield item;
      }
    })();
  };

  send(...items: Array<LockEventInfo | Error | "end">): void {
    for (const item of items) this.push!(item);
  }
}

const noFallback: LockChangeSource = {
  subscribe: async () => assert.fail("the fallback was used"),
  close: () => {},
};

test("the snapshot is the baseline; every later event but a renewal is a change", async () => {
  const fed = new FedWatch();
  const source = new WatchLockChangeSource(fed.watch, noFallback, { clock: new ManualClock(0) });
  let changes = 0;
  let subscribed = false;
  const subscribing = source.subscribe(() => changes++).then((off) => ((subscribed = true), off));
  await settle();
  fed.send(event("HELD", "a"), event("HELD", "b"));
  await settle();
  assert.equal(subscribed, false, "subscribe() waits for the snapshot to complete");
  fed.send(event("SNAPSHOT_COMPLETE", ""));
  const off = await subscribing;
  assert.equal(changes, 0, "the snapshot itself is no change");
  fed.send(event("RENEWED"));
  await settle();
  assert.equal(changes, 0, "a renewal is no change");
  fed.send(event("ACQUIRED"), event("WAITERS_CHANGED"), event("RELEASED"), event("FORCE_RELEASED"));
  await settle();
  assert.equal(changes, 4);
  off();
  assert.equal(fed.signals[0]!.aborted, true, "the last subscriber's leaving ends the stream");
  source.close();
});

test("a broken stream is opened again a second later, and its new snapshot counts as a change", async () => {
  const fed = new FedWatch();
  const clock = new ManualClock(0);
  const source = new WatchLockChangeSource(fed.watch, noFallback, { clock });
  let changes = 0;
  const subscribing = source.subscribe(() => changes++);
  await settle();
  fed.send(event("SNAPSHOT_COMPLETE", ""));
  await subscribing;
  fed.send(new LockClientError("the service went away", status.UNAVAILABLE));
  await settle();
  assert.equal(fed.opened, 1);
  await clock.advance(999);
  assert.equal(fed.opened, 1, "not before a second");
  await clock.advance(1);
  assert.equal(fed.opened, 2, "opened again");
  fed.send(event("HELD"), event("SNAPSHOT_COMPLETE", ""));
  await settle();
  assert.equal(changes, 1, "what happened while it was down was not seen: one change");
  source.close();
  assert.equal(fed.signals[1]!.aborted, true);
});

test("a service without Watch (UNIMPLEMENTED): subscribers are followed by the fallback source", async () => {
  const fed = new FedWatch();
  const fallbackListeners: Array<() => void> = [];
  const fallback: LockChangeSource = {
    subscribe: async (onChange) => {
      fallbackListeners.push(onChange);
      return () => {};
    },
    close: () => {},
  };
  const source = new WatchLockChangeSource(fed.watch, fallback, { clock: new ManualClock(0) });
  let changes = 0;
  const subscribing = source.subscribe(() => changes++);
  await settle();
  fed.send(new LockClientError("unknown method Watch", status.UNIMPLEMENTED));
  await subscribing;
  assert.equal(fallbackListeners.length, 1);
  fallbackListeners[0]!();
  assert.equal(changes, 1, "changes come from the fallback now");
  await source.subscribe(() => {});
  assert.equal(fallbackListeners.length, 2, "later subscribers go straight to the fallback");
  assert.equal(fed.opened, 1, "no more watches are opened");
  source.close();
});
