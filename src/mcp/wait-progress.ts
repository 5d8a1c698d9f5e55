import type { LockInfo } from "../client/index.ts";
import { formatDuration } from "../cli/duration.ts";
import { quoted } from "../cli/display-text.ts";
import { describeHolder } from "../cli/wait-display.ts";

// While lock_acquire waits in the queue, the MCP client gets a progress
// notification about once a second saying who holds the resource. Besides
// informing the agent, progress keeps the request alive in clients that
// reset their request timeout on progress (the SDK's resetTimeoutOnProgress).

export interface WaitProgressOptions {
  resource: string;
  /** How long the call waits at most, in ms (the progress total). */
  waitMs: number;
  list: (prefix: string) => Promise<LockInfo[]>;
  /** `progress` and `total` in seconds. */
  notify: (progress: number, total: number, message: string) => Promise<void>;
  everyMs?: number;
}

/** Starts reporting; the returned function stops it. */
export function startWaitProgress(options: WaitProgressOptions): () => void {
  const everyMs = options.everyMs ?? 1_000;
  const started = Date.now();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let lastProgress = -1;

  const tick = async () => {
    let what: string;
    try {
      const held = (await options.list(options.resource)).find((lock) => lock.resource === options.resource);
      what = held === undefined ? "it is free, being granted" : describeHolder(held, Date.now());
    } catch {
      what = "cannot list the holders right now";
    }
    if (stopped) return;
    const waited = Date.now() - started;
    // Progress must increase with each notification.
    const progress = Math.max(lastProgress + 0.001, Math.round(waited / 100) / 10);
    lastProgress = progress;
    try {
      await options.notify(
        progress,
        options.waitMs / 1000,
        `waiting ${formatDuration(waited)} for ${quoted(options.resource)}: ${what}`,
      );
    } catch {
      // The client went away; the session's end cancels the wait.
    }
    if (!stopped) timer = setTimeout(() => void tick(), everyMs).unref();
  };
  // The first report soon, so that a wait that ends at once says nothing.
  timer = setTimeout(() => void tick(), Math.min(200, everyMs)).unref();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
