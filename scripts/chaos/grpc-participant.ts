// A participant that holds locks through the service, with the project's
// TypeScript LockClient (auto-renewal over KeepAlive, the loss signal).
import { performance } from "node:perf_hooks";
import { keepAliveDiagnostics } from "../../src/client/diagnostics.ts";
import { LeaseLostError, LockClient, LockClientError, ResourceBusyError } from "../../src/client/index.ts";
import { HistoryWriter, mono, type LossReason } from "./history.ts";
import { configFromArgv } from "./participant-config.ts";
import { recordCrashes, runParticipant, type Holding, type Participant } from "./participant-loop.ts";

const config = configFromArgv();
const history = new HistoryWriter(config.historyFile, config.name);
recordCrashes(history);
history.record({ ev: "start", kind: "grpc" });

const client = new LockClient({ address: config.address, reconnect: { initialDelayMs: 50, maxDelayMs: 500 } });

/** A wall-clock instant on the mono scale (the wall clock does not jump here). */
const monoOf = (date: Date) => mono() + (date.getTime() - Date.now());
/** performance.now() is monotonic too: the same clock from another origin. */
const perfToMono = mono() - performance.now();
/** Confirmed renewals, told by the client's KeepAlive diagnostics (one lease at a time per participant). */
let onRenewed: ((deadline: number) => void) | undefined;
client[keepAliveDiagnostics].on("renewed", (renewal: { sentAt: number; ttl: number }) => onRenewed?.(perfToMono + renewal.sentAt + renewal.ttl));

const participant: Participant = {
  async acquire(resource, waitMs, ttlMs, signal): Promise<Holding> {
    const lock = await client.acquire(resource, { ttl: ttlMs, wait: waitMs, holder: config.name, signal });
    const token = Number(lock.fencingToken);
    let lost: LossReason | undefined;
    let releasing = false;
    const onLost = () => {
      if (releasing) return;
      const reason = (lock.signal.reason as LeaseLostError).reason;
      lost = reason;
      history.record({ ev: "lost", resource, token, reason, deadline: monoOf(lock.expiresAt) });
    };
    if (lock.signal.aborted) onLost();
    else lock.signal.addEventListener("abort", onLost, { once: true });
    onRenewed = (deadline) => {
      if (lost === undefined) history.record({ ev: "renewed", resource, token, deadline });
    };
    return {
      token,
      deadline: () => monoOf(lock.expiresAt),
      lostReason: () => lost,
      async release() {
        releasing = true;
        onRenewed = undefined;
        const wasLost = lost !== undefined;
        await lock.release();
        return !wasLost;
      },
    };
  },
  classify(err) {
    if (err instanceof ResourceBusyError) return "busy";
    // The service killed or stopped, a stream cut: what the injector causes.
    if (err instanceof LockClientError) return "error";
    return "crash";
  },
  async close() {
    await client[Symbol.asyncDispose]();
  },
};

await runParticipant(config, participant, history);
