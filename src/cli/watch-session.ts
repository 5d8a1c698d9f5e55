import { LockClient, UnavailableError, WatcherTooSlowError, type LockEventInfo } from "../client/index.ts";
import { Backoff } from "../client/backoff.ts";
import type { ChannelSecurity } from "../client/channel.ts";

// A watch that outlives service restarts and its own falling behind: the
// commands that watch (status --watch, wait) re-open it with backoff, and
// each re-opened watch starts with a fresh snapshot.

export interface WatchSessionOptions {
  address: string;
  /** TLS and a bearer token (the connection flags), if any. */
  security?: ChannelSecurity;
  prefix: string;
  signal: AbortSignal;
  /** Called with each event, in order. Returning true ends the session. */
  onEvent: (event: LockEventInfo) => boolean | void;
  /** Told why the watch is being re-opened. */
  onReconnect: (why: string, delayMs: number) => void;
}

/**
 * Runs until onEvent says stop or the signal aborts. The first connection
 * must succeed (its error is thrown: the service is not there); later
 * breaks are retried for ever.
 */
export async function runWatchSession(options: WatchSessionOptions): Promise<void> {
  const client = new LockClient({ address: options.address, ...options.security });
  let connectedOnce = false;
  const backoff = new Backoff(100, 2_000);
  try {
    while (!options.signal.aborted) {
      try {
        for await (const event of client.watch(options.prefix, { signal: options.signal })) {
          connectedOnce = true;
          backoff.reset();
          if (options.onEvent(event) === true) return;
        }
        return; // aborted
      } catch (err) {
        const retryable = err instanceof UnavailableError || err instanceof WatcherTooSlowError;
        if (!retryable || !connectedOnce) throw err;
        const delayMs = backoff.next();
        options.onReconnect((err as Error).message, delayMs);
        await sleep(delayMs, options.signal);
      }
    }
  } finally {
    client.close();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
