// While a caller waits for a resource, who holds it: ListLocks about once a
// second, for people only (the grant itself comes from the Acquire call).
// Shared by the command line's waiting line (wait-display.ts) and the MCP
// server's progress notifications (src/mcp/wait-progress.ts).

/** What is shown of a listed lock (the client's LockInfo has it). */
export interface HeldLock {
  resource: string;
  holder: string;
  fencingToken: bigint | number;
  acquiredAt: Date;
  expiresAt: Date;
  waiters: number;
}

/** One look: the holder, undefined when the resource is free, or "unknown" when the listing failed. */
export type HolderSighting = HeldLock | undefined | "unknown";

export interface HolderPollOptions {
  resource: string;
  /** Lists locks whose names start with the prefix. */
  list: (prefix: string) => Promise<HeldLock[]>;
  /** Called after each look, until stopped; the next look waits for it. */
  report: (sighting: HolderSighting) => void | Promise<void>;
  everyMs?: number;
  /** The first look, after which a grant that came at once says nothing. Default 200 ms. */
  firstAfterMs?: number;
}

/** Starts looking; the returned function stops (a report in flight is the last). */
export function pollHolder(options: HolderPollOptions): () => void {
  const everyMs = options.everyMs ?? 1000;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const look = async () => {
    let sighting: HolderSighting;
    try {
      sighting = (await options.list(options.resource)).find((lock) => lock.resource === options.resource);
    } catch {
      sighting = "unknown"; // The Acquire call reports real trouble; a look just cannot tell.
    }
    if (stopped) return;
    await options.report(sighting);
    if (!stopped) timer = setTimeout(() => void look(), everyMs).unref();
  };
  timer = setTimeout(() => void look(), options.firstAfterMs ?? 200).unref();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
