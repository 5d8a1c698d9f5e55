import { withTimeout } from "./wait.ts";

/**
 * Reads an async iterable one item at a time, keeping what it read, so a
 * test can await "the next item matching X" without fixed sleeps.
 */
export class EventReader<T> {
  readonly seen: T[] = [];
  private readonly iterator: AsyncIterator<T>;

  constructor(iterable: AsyncIterable<T>) {
    this.iterator = iterable[Symbol.asyncIterator]();
  }

  /** The next item; fails after `timeoutMs` or if the iterable ends. */
  async next(what = "the next event", timeoutMs = 5_000): Promise<T> {
    const result = await withTimeout(this.iterator.next(), timeoutMs, what);
    if (result.done) throw new Error(`the stream ended while waiting for ${what}`);
    this.seen.push(result.value);
    return result.value;
  }

  /** Reads until an item matches; returns it (the ones skipped stay in `seen`). */
  async until(match: (item: T) => boolean, what: string, timeoutMs = 5_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const item = await this.next(what, Math.max(1, deadline - Date.now()));
      if (match(item)) return item;
    }
  }

  /** Ends the iteration (cancels the watch). */
  async close(): Promise<void> {
    await this.iterator.return?.();
  }
}
