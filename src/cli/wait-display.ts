import { formatDuration } from "./duration.ts";
import { quoted } from "./display-text.ts";
import { pollHolder, type HeldLock, type HolderSighting } from "./holder-poll.ts";

// While `run` or `acquire` waits, it says on stderr who holds the resource and
// for how long. The facts come from ListLocks, polled about once a second;
// they are for people only: the grant itself comes from the Acquire call.
//
// On a terminal the status is one line rewritten in place (\r); otherwise
// (CI logs, files) a plain line is written when the holder changes, so a log
// shows each holder once instead of a line per second.

export type { HeldLock };

export interface WaitDisplayOptions {
  resource: string;
  /** Lists locks whose names start with the prefix. */
  list: (prefix: string) => Promise<HeldLock[]>;
  write: (text: string) => void;
  /** Rewrite one line in place (a terminal) instead of writing a line per change. */
  live: boolean;
  /** Prefix of every line, like "mcp-lockd run". */
  label: string;
  /** The terminal's width: a live line longer than that would wrap and could not be rewritten. */
  columns?: number;
  everyMs?: number;
  /** The first look, after which a grant that came at once says nothing. Default 200 ms. */
  firstAfterMs?: number;
  now?: () => number;
}

export interface WaitDisplay {
  /** Stops polling and clears the live line; safe to call twice. True if it said anything. */
  stop(): boolean;
}

export function startWaitDisplay(options: WaitDisplayOptions): WaitDisplay {
  const now = options.now ?? Date.now;
  const started = now();
  let stopped = false;
  let lineShown = false;
  let saidSomething = false;
  let lastHolderKey: string | undefined;

  const stopPolling = pollHolder({
    resource: options.resource,
    list: options.list,
    everyMs: options.everyMs,
    firstAfterMs: options.firstAfterMs,
    report: (held) => {
      const waited = formatDuration(now() - started);
      if (options.live) {
        const line = `${options.label}: waiting ${waited} for ${quoted(options.resource)}: ${describeSighting(held, now())}`;
        const width = options.columns ?? 0;
        options.write(`\r\x1b[K${width > 1 && line.length >= width ? `${line.slice(0, width - 2)}…` : line}`);
        lineShown = true;
        if (held !== undefined && held !== "unknown") saidSomething = true;
      } else if (held !== undefined && held !== "unknown") {
        // One line per holder (a new fencing token is a new grant, even to the same holder name).
        const key = `${held.holder}\u0000${String(held.fencingToken)}`;
        if (key !== lastHolderKey) {
          lastHolderKey = key;
          saidSomething = true;
          options.write(`${options.label}: waiting for ${quoted(options.resource)}: ${describeHolder(held, now())}\n`);
        }
      }
    },
  });

  return {
    stop() {
      if (!stopped) {
        stopped = true;
        stopPolling();
        if (lineShown) options.write("\r\x1b[K");
        lineShown = false;
      }
      return saidSomething;
    },
  };
}

/** `held by "ci-42" for 12s (fencing token 7, expires in 18s, 2 waiting)` */
export function describeHolder(lock: HeldLock, nowMs: number): string {
  const heldFor = formatDuration(Math.max(0, nowMs - lock.acquiredAt.getTime()));
  const expiresIn = lock.expiresAt.getTime() - nowMs;
  const expiry = expiresIn > 0 ? `expires in ${formatDuration(expiresIn)}` : "expired, being reclaimed";
  const waiting = lock.waiters > 0 ? `, ${lock.waiters} waiting` : "";
  return `held by ${quoted(lock.holder)} for ${heldFor} (fencing token ${String(lock.fencingToken)}, ${expiry}${waiting})`;
}

/** What one look found, as a waiting line or progress message ends. */
export function describeSighting(sighting: HolderSighting, nowMs: number): string {
  if (sighting === "unknown") return "cannot list the holders right now";
  if (sighting === undefined) return "it is free, being granted";
  return describeHolder(sighting, nowMs);
}
