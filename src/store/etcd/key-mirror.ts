import { StoreUnavailableError } from "../../core/errors.ts";
import { Event_EventType, type KeyValue } from "../../gen/etcd/mvccpb/kv.ts";
import { EtcdWatchCanceledError, type EtcdClient } from "./etcd-client.ts";
import type { EtcdKeyLayout } from "./etcd-keys.ts";

// One replica's copy of every key under the prefix, kept current by ONE
// long-lived watch opened at the listing's revision + 1. Decisions are made
// on it and then checked by etcd itself (every write is a Txn whose compares
// name the revisions the decision used), so a copy that lags can make a write
// fail and be retried, never make a wrong one succeed. Waking a waiter is an
// event on this watch: no new watch per wait, so none of etcd's 100 ms
// catch-up of watches opened on an old revision.

export interface MirroredKey {
  value: Buffer;
  createRevision: bigint;
  modRevision: bigint;
  lease: bigint;
}

export interface MirroredResource {
  holder?: MirroredKey;
  /** The holder key's version that the last delete removed (a writer whose delete lost its answer finds it here). */
  removedHolder?: MirroredKey;
  counter?: MirroredKey;
  /** By lease-id hash; FIFO order is createRevision. */
  waiters: Map<string, MirroredKey>;
}

const PROGRESS_EVERY_MS = 200;
const RETRY_AFTER_MS = 250;

export class KeyMirror {
  private readonly resources = new Map<string, MirroredResource>();
  /** Every change up to this revision is applied (0: not loaded). */
  revision = 0n;
  private readonly reached: Array<{ revision: bigint; resolve: () => void }> = [];
  private readonly abort = new AbortController();
  private loaded: Promise<void> | undefined;
  private running = false;
  /** Why the mirror is not following etcd now; undefined while it is. */
  lagging: string | undefined = "not loaded yet";

  constructor(
    private readonly client: EtcdClient,
    private readonly layout: EtcdKeyLayout,
    /** A resource changed (undefined: anything may have, after a re-listing). */
    private readonly onChange: (resource: string | undefined) => void,
    private readonly warn: (message: string) => void,
  ) {}

  /** Lists once and starts following; resolves when the first listing is in (rejects if it fails, and keeps trying). */
  start(): Promise<void> {
    if (!this.running) {
      this.running = true;
      this.loaded = new Promise((resolve, reject) => {
        void this.follow(resolve, reject);
      });
      this.loaded.catch(() => {});
    }
    return this.loaded!;
  }

  close(): void {
    this.abort.abort(new Error("the etcd store is closed"));
  }

  get(resource: string): MirroredResource | undefined {
    return this.resources.get(resource);
  }

  names(): IterableIterator<string> {
    return this.resources.keys();
  }

  /** Resolves once every change up to `revision` is applied; rejects after `timeoutMs`. */
  reach(revision: bigint, timeoutMs = 5_000): Promise<void> {
    if (this.revision >= revision) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const entry = { revision, resolve: () => (clearTimeout(timer), resolve()) };
      const timer = setTimeout(() => {
        const at = this.reached.indexOf(entry);
        if (at >= 0) this.reached.splice(at, 1);
        reject(new StoreUnavailableError(`etcd: this replica's watch did not reach revision ${revision} within ${timeoutMs} ms${this.lagging ? ` (${this.lagging})` : ""}`));
      }, timeoutMs);
      this.reached.push(entry);
    });
  }

  private async follow(loaded: () => void, failed: (err: Error) => void): Promise<void> {
    let first = true;
    let failedFirst = false;
    while (!this.abort.signal.aborted) {
      try {
        await this.list();
        // After a failed first listing too, whoever read the store meanwhile saw nothing: everything may have changed.
        if (first) loaded();
        if (!first || failedFirst) this.onChange(undefined);
        first = false;
        this.lagging = undefined;
        for await (const response of this.client.watch(
          { key: this.layout.resourcesPrefix, rangeEnd: this.layout.resourcesEnd, startRevision: this.revision + 1n, progressNotify: true },
          { signal: this.abort.signal, checkEveryMs: PROGRESS_EVERY_MS },
        )) {
          this.lagging = undefined;
          const changed = new Set<string>();
          for (const event of response.events) {
            const kv = event.kv;
            if (!kv) continue;
            const resource = this.apply(kv, event.type === Event_EventType.DELETE);
            if (resource !== undefined) changed.add(resource);
            if (kv.modRevision > this.revision) this.revision = kv.modRevision;
          }
          const at = response.header?.revision ?? 0n;
          // A progress answer (no events) says nothing up to its revision is still to come.
          if (response.events.length === 0 && !response.created && at > this.revision) this.revision = at;
          this.wake();
          for (const resource of changed) this.onChange(resource);
        }
        return; // aborted
      } catch (err) {
        if (this.abort.signal.aborted) return;
        const compacted = err instanceof EtcdWatchCanceledError;
        this.lagging = `${first ? "not loaded yet: " : ""}${(err as Error).message}`;
        failedFirst ||= first;
        if (first) failed(new StoreUnavailableError(`etcd: listing ${this.layout.prefix} failed: ${(err as Error).message}`));
        this.warn(`etcd watch on ${this.layout.prefix}${compacted ? ":" : " broke:"} ${(err as Error).message}; listing again`);
        await new Promise((resolve) => setTimeout(resolve, compacted ? 0 : RETRY_AFTER_MS));
      }
    }
  }

  /** Replaces the copy with a fresh listing (at start, after a compaction or a broken watch). */
  private async list(): Promise<void> {
    const response = await this.client.range({ key: this.layout.resourcesPrefix, rangeEnd: this.layout.resourcesEnd }, { signal: this.abort.signal, timeoutMs: 10_000 });
    this.resources.clear();
    for (const kv of response.kvs) this.apply(kv, false);
    const at = response.header?.revision ?? 0n;
    if (at > this.revision) this.revision = at;
    this.wake();
  }

  private apply(kv: KeyValue, deleted: boolean): string | undefined {
    const parsed = this.layout.parse(kv.key);
    if (!parsed) return undefined;
    const { resource, kind } = parsed;
    let entry = this.resources.get(resource);
    if (!entry) {
      if (deleted) return resource;
      entry = { waiters: new Map() };
      this.resources.set(resource, entry);
    }
    const mirrored: MirroredKey | undefined = deleted
      ? undefined
      : { value: kv.value, createRevision: kv.createRevision, modRevision: kv.modRevision, lease: kv.lease };
    if (kind === "holder") {
      if (!mirrored && entry.holder) entry.removedHolder = entry.holder;
      entry.holder = mirrored;
    }
    else if (kind === "counter") entry.counter = mirrored;
    else if (mirrored) entry.waiters.set(parsed.leaseIdHash!, mirrored);
    else entry.waiters.delete(parsed.leaseIdHash!);
    // The counter stays for ever; a resource with only a counter is free but remembered.
    return resource;
  }

  private wake(): void {
    for (let i = this.reached.length - 1; i >= 0; i--) {
      const entry = this.reached[i]!;
      if (entry.revision <= this.revision) {
        this.reached.splice(i, 1);
        entry.resolve();
      }
    }
  }
}
