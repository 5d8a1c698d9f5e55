import { setTimeout as sleep } from "node:timers/promises";
import { appendFenced } from "./fenced-resource.ts";
import { HistoryWriter, mono, type LossReason } from "./history.ts";
import type { ParticipantConfig } from "./participant-config.ts";
import { Random } from "./random.ts";

/** A lease as the loop sees it, whatever the participant holds it through. */
export interface Holding {
  readonly token: number;
  /** The holder's own last confirmed expiry (mono ms). */
  deadline(): number;
  /** Why it was lost, once the holder has been told. */
  lostReason(): LossReason | undefined;
  /** Stops renewing and releases; true when a live lease of ours was removed. */
  release(): Promise<boolean>;
}

export type Failure = "busy" | "error" | "crash";

/** How one kind of participant acquires. */
export interface Participant {
  acquire(resource: string, waitMs: number, ttlMs: number, signal: AbortSignal): Promise<Holding>;
  /** busy (held, the wait ran out), error (a failure chaos explains: unavailable...), or crash (a bug). */
  classify(err: unknown): Failure;
  close(): Promise<void>;
}

/**
 * The life of every Node participant: pick a resource, wait for it, hold it a
 * short random time writing its token to the fenced resource, release,
 * repeat; every step recorded. SIGTERM ends it after the current step (the
 * campaign's quiet period); SIGKILL and SIGSTOP come from the injector.
 */
export async function runParticipant(config: ParticipantConfig, participant: Participant, history: HistoryWriter): Promise<void> {
  const random = new Random(config.seed);
  const stopping = new AbortController();
  process.once("SIGTERM", () => stopping.abort());
  let attempt = 0;
  let writes = 0;
  while (!stopping.signal.aborted) {
    attempt += 1;
    const resource = random.pick(config.resources);
    const waitMs = random.next() < 0.2 ? 0 : random.int(200, config.maxWaitMs);
    history.record({ ev: "acquire-start", resource, attempt, waitMs, ttlMs: config.ttlMs });
    let holding: Holding;
    try {
      holding = await participant.acquire(resource, waitMs, config.ttlMs, stopping.signal);
    } catch (err) {
      const failure = stopping.signal.aborted ? "aborted" : participant.classify(err);
      const message = (err as Error)?.message ?? String(err);
      history.record({ ev: "acquire-end", resource, attempt, outcome: failure === "crash" ? "error" : failure, error: message });
      if (failure === "crash") history.record({ ev: "crash", message, stack: (err as Error)?.stack });
      await sleep(random.int(10, 200));
      continue;
    }
    history.record({ ev: "acquire-end", resource, attempt, outcome: "granted", token: holding.token, deadline: holding.deadline() });
    // Mostly short holds; some of one to two ttls, so renewals happen while held.
    const holdMs = random.next() < 0.85 ? random.int(30, 500) : random.int(config.ttlMs / 2, config.ttlMs * 2);
    const until = mono() + holdMs;
    while (mono() < until && !stopping.signal.aborted) {
      // A holder checks its own deadline before it acts (docs/protocol.md section 7).
      if (holding.lostReason() !== undefined || mono() >= holding.deadline()) break;
      writes += 1;
      const id = `${process.pid}-${writes}`;
      const accepted = appendFenced(config.fencedDir, resource, { token: holding.token, id });
      history.record({ ev: "write", resource, token: holding.token, id, accepted, deadline: holding.deadline() });
      await sleep(random.int(20, 150));
    }
    const reason = holding.lostReason() ?? (mono() >= holding.deadline() ? "unconfirmed" : undefined);
    if (reason !== undefined && holding.lostReason() === undefined) {
      history.record({ ev: "lost", resource, token: holding.token, reason, deadline: holding.deadline() });
    }
    history.record({ ev: "release-start", resource, token: holding.token });
    try {
      const released = await holding.release();
      history.record({ ev: "release-end", resource, token: holding.token, released });
    } catch (err) {
      const message = (err as Error)?.message ?? String(err);
      history.record({ ev: "release-end", resource, token: holding.token, released: false, error: message });
      if (participant.classify(err) === "crash") history.record({ ev: "crash", message, stack: (err as Error)?.stack });
    }
    await sleep(random.int(0, 150));
  }
  await participant.close();
  history.record({ ev: "exit" });
}

/** Records uncaught errors as crashes (then exits 70), so the checker sees every stack trace. */
export function recordCrashes(history: HistoryWriter): void {
  const crash = (err: unknown) => {
    history.record({ ev: "crash", message: (err as Error)?.message ?? String(err), stack: (err as Error)?.stack });
    process.exit(70);
  };
  process.on("uncaughtException", crash);
  process.on("unhandledRejection", crash);
}
