import type { AcquireOptions, Lock, LockClient } from "../client/index.ts";
import type { CommandIo } from "./command-io.ts";
import { quoted } from "./display-text.ts";
import { formatDuration } from "./duration.ts";
import { startWaitDisplay } from "./wait-display.ts";

// Acquiring from the command line, shared by `run` and `acquire`: wait in the
// queue while showing who holds the resource, and leave the queue cleanly
// (the Acquire call is cancelled, so the service drops us and the next waiter
// is not held up) when SIGINT, SIGTERM or SIGHUP arrives.
//
// The caller installs the signal handlers for its whole life (catchSignals)
// and aborts `interrupt` with an InterruptedError: removing the last handler
// restores the default action, and a signal in that gap would kill the
// process with a lease held.

/** The signals that end a wait (and that `run` forwards to its command). */
export const INTERRUPT_SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/** A signal ended the wait; the caller exits 128 + its number. */
export class InterruptedError extends Error {
  override name = "InterruptedError";
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal}`);
  }
}

/** Calls `handler` for each of `signals` until the returned function is called. */
export function catchSignals(signals: readonly NodeJS.Signals[], handler: (signal: NodeJS.Signals) => void): () => void {
  for (const signal of signals) process.on(signal, handler);
  return () => {
    for (const signal of signals) process.off(signal, handler);
  };
}

export async function acquireInterruptibly(
  client: LockClient,
  resource: string,
  options: Omit<AcquireOptions, "signal">,
  interrupt: AbortSignal,
  io: CommandIo,
  label: string,
): Promise<Lock> {
  if (interrupt.reason instanceof InterruptedError) throw interrupt.reason;
  const display =
    options.wait === 0 || options.wait === undefined
      ? undefined
      : startWaitDisplay({
          resource,
          list: (prefix) => client.list(prefix),
          write: io.stderr,
          live: io.stderrIsTTY,
          columns: io.columns,
          label,
        });
  const started = Date.now();
  let lock: Lock | undefined;
  try {
    try {
      lock = await client.acquire(resource, { ...options, signal: interrupt });
    } catch (err) {
      if (interrupt.reason instanceof InterruptedError) throw interrupt.reason;
      throw err;
    }
    if (interrupt.reason instanceof InterruptedError) {
      // The grant and the signal crossed: nobody will use this lease.
      await lock.release().catch(() => {});
      throw interrupt.reason;
    }
    return lock;
  } finally {
    // Close the story the waiting lines told, in logs and on terminals alike.
    if (display?.stop() && lock !== undefined && !(interrupt.reason instanceof InterruptedError)) {
      io.stderr(
        `${label}: acquired ${quoted(resource)} after waiting ${formatDuration(Date.now() - started)} (fencing token ${lock.fencingToken.toString()})\n`,
      );
    }
  }
}
