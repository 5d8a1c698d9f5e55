import type { ServerResponse } from "node:http";
import { snapshotComplete, type LockEvent } from "../core/lock-events.ts";
import type { LockManager } from "../core/lock-manager.ts";
import { lockEventToJson } from "./lock-event-json.ts";

// GET /events: the Watch stream as server-sent events for the web view. Each
// lock event is a `message` whose data is its JSON (lock-event-json.ts); a
// `store` event says whether the lock dir can be written. As with Watch, a
// reader that falls behind is cut off (EventSource re-connects and gets a
// fresh snapshot) rather than buffered without bound.

/** Bytes an SSE reader may fall behind by before it is cut off. */
const MAX_BUFFERED_BYTES = 1024 * 1024;
const STORE_PROBE_INTERVAL_MS = 2_000;
/** A comment line this often keeps proxies from closing an idle stream. */
const HEARTBEAT_MS = 15_000;

/** Probes the lock dir while any reader is connected, once for all of them. */
export class StoreHealthFeed {
  private readonly listeners = new Set<(up: boolean, detail: string) => void>();
  private timer: NodeJS.Timeout | undefined;
  private last: { up: boolean; detail: string } | undefined;

  constructor(private readonly probe: () => Promise<void>) {}

  subscribe(listener: (up: boolean, detail: string) => void): () => void {
    this.listeners.add(listener);
    if (this.last) listener(this.last.up, this.last.detail);
    if (this.timer === undefined) {
      void this.check();
      this.timer = setInterval(() => void this.check(), STORE_PROBE_INTERVAL_MS);
      this.timer.unref();
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
        this.last = undefined;
      }
    };
  }

  private async check(): Promise<void> {
    let state: { up: boolean; detail: string };
    try {
      await this.probe();
      state = { up: true, detail: "" };
    } catch (err) {
      state = { up: false, detail: (err as Error).message };
    }
    if (this.last?.up === state.up && this.last.detail === state.detail) return;
    this.last = state;
    for (const listener of this.listeners) listener(state.up, state.detail);
  }
}

export function serveEventStream(manager: LockManager, storeHealth: StoreHealthFeed, response: ServerResponse, shutdown: AbortSignal): void {
  response.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-store",
    "x-accel-buffering": "no",
  });
  let closed = false;
  const send = (text: string) => {
    if (closed) return;
    response.write(text);
    if (response.writableLength > MAX_BUFFERED_BYTES) close();
  };
  const sendEvent = (event: LockEvent) => send(`data: ${JSON.stringify(lockEventToJson(event))}\n\n`);
  // Snapshot and subscription in one turn: nothing falls in between.
  const snapshot = manager.snapshot();
  const unsubscribe = manager.subscribe(sendEvent);
  const unsubscribeStore = storeHealth.subscribe((up, detail) => send(`event: store\ndata: ${JSON.stringify({ up, detail })}\n\n`));
  const heartbeat = setInterval(() => send(": heartbeat\n\n"), HEARTBEAT_MS);
  function close(): void {
    if (closed) return;
    closed = true;
    unsubscribe();
    unsubscribeStore();
    clearInterval(heartbeat);
    shutdown.removeEventListener("abort", close);
    response.end();
  }
  // The response, not the request: a request ends once read, its response when the reader leaves.
  response.on("close", close);
  shutdown.addEventListener("abort", close, { once: true });
  for (const event of snapshot) sendEvent(event);
  sendEvent(snapshotComplete(Date.now()));
}
