import type { LockInfo } from "../client/index.ts";
import { formatDuration } from "../cli/duration.ts";
import { quoted } from "../cli/display-text.ts";
import { pollHolder } from "../cli/holder-poll.ts";
import { describeSighting } from "../cli/wait-display.ts";

// While lock_acquire waits in the queue, the MCP client gets a progress
// notification about once a second saying who holds the resource (the same
// look and words as `mcp-lockd run`'s waiting line). Besides informing the
// agent, progress keeps the request alive in clients that reset their
// request timeout on progress (the SDK's resetTimeoutOnProgress).

export interface WaitProgressOptions {
  resource: string;
  /** How long the call waits at most, in ms (the progress total). */
  waitMs: number;
  list: (prefix: string) => Promise<LockInfo[]>;
  /** `progress` and `total` in seconds. */
  notify: (progress: number, total: number, message: string) => Promise<void>;
}

/** Starts reporting; the returned function stops it. */
export function startWaitProgress(options: WaitProgressOptions): () => void {
  const started = Date.now();
  let lastProgress = 0;
  return pollHolder({
    resource: options.resource,
    list: options.list,
    report: async (sighting) => {
      const waited = Date.now() - started;
      // Progress must increase with each notification.
      const progress = Math.max(lastProgress + 0.001, Math.round(waited / 100) / 10);
      lastProgress = progress;
      try {
        await options.notify(
          progress,
          options.waitMs / 1000,
          `waiting ${formatDuration(waited)} for ${quoted(options.resource)}: ${describeSighting(sighting, Date.now())}`,
        );
      } catch {
        // The client went away; the session's end cancels the wait.
      }
    },
  });
}
