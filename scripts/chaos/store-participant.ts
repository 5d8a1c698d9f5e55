// A file-protocol participant that is a second, independent writer of the
// lock dir using the service's own LeaseFileStore class directly (as a second
// service on the same dir would), with its own renewal timer and deadline.
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { StoreError } from "../../src/core/errors.ts";
import { hashLeaseId } from "../../src/core/lease-id.ts";
import { LeaseFileStore } from "../../src/store/lease-file-store.ts";
import { HistoryWriter, mono, type LossReason } from "./history.ts";
import { configFromArgv } from "./participant-config.ts";
import { recordCrashes, runParticipant, type Holding, type Participant } from "./participant-loop.ts";

const config = configFromArgv();
const history = new HistoryWriter(config.historyFile, config.name);
recordCrashes(history);
history.record({ ev: "start", kind: "node-store" });

const store = new LeaseFileStore({ dir: config.lockDir, onWarning: (message) => process.stderr.write(`warning: ${message}\n`) });
await store.open();

class Busy extends Error {}

const participant: Participant = {
  async acquire(resource, waitMs, ttlMs, signal): Promise<Holding> {
    const leaseIdHash = hashLeaseId(randomBytes(32).toString("base64url"));
    const giveUpAt = mono() + waitMs;
    for (;;) {
      // The lease's time runs from when the store read the clock, under the guard: counting from
      // before the call is never later than that (as the gRPC client counts from sending).
      const before = mono();
      const outcome = await store.acquire(resource, { holder: config.name, ttlMs, metadata: {}, leaseIdHash });
      if ("granted" in outcome) return hold(resource, outcome.granted.fencingToken, leaseIdHash, before + ttlMs, ttlMs);
      if (mono() >= giveUpAt || signal.aborted) throw new Busy(`${resource} is held`);
      await sleep(5 + Math.random() * 15); // the protocol's polling, with jitter
    }
  },
  classify(err) {
    if (err instanceof Busy) return "busy";
    // A guard held past its wait by a stopped process, a file made unreadable...
    if (err instanceof StoreError) return "error";
    return "crash";
  },
  async close() {},
};

function hold(resource: string, token: number, leaseIdHash: string, firstDeadline: number, ttlMs: number): Holding {
  let deadline = firstDeadline;
  let lost: LossReason | undefined;
  let stopped = false;
  const markLost = (reason: LossReason) => {
    if (lost !== undefined || stopped) return;
    lost = reason;
    history.record({ ev: "lost", resource, token, reason, deadline });
  };
  let renewing: Promise<void> = Promise.resolve();
  const renewOnce = async () => {
    // Past our own deadline we may already count as gone: write nothing.
    if (mono() >= deadline) return markLost("unconfirmed");
    const before = mono();
    try {
      const renewed = await store.renew(resource, leaseIdHash);
      if (stopped) return;
      if (renewed === undefined) return markLost("expired");
      deadline = before + ttlMs;
      history.record({ ev: "renewed", resource, token, deadline });
    } catch {
      // The guard stayed busy (someone stopped inside it): try again next time.
    }
  };
  const timer = setInterval(() => {
    renewing = renewing.then(renewOnce);
  }, ttlMs / 3);
  return {
    token,
    deadline: () => deadline,
    lostReason: () => lost,
    async release() {
      clearInterval(timer);
      await renewing;
      stopped = true;
      return (await store.release(resource, leaseIdHash)) && lost === undefined;
    },
  };
}

await runParticipant(config, participant, history);
