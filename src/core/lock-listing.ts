import type { Clock } from "./clock.ts";
import { blockedUntil } from "./lease.ts";
import type { ListedLock } from "./lock-manager.ts";

/** What a listing reads from the lock manager (see LockManager.cachedListing). */
export interface ListingSource {
  clock: Clock;
  /** Every live held resource in name order, reading the lock dir first if it never was (or throwing its error). */
  list(): Promise<ListedLock[]>;
  /** One resource's listed form now, expired or not; undefined when nothing blocks it. */
  current(resource: string): ListedLock | undefined;
  /** Calls `onChange(resource)` whenever a resource's blocker or queue changes; returns the unsubscriber. */
  watch(onChange: (resource: string) => void): () => void;
  /** Throws when what is tracked may be stale (a shared store cut off from its quorum): an answer must not pass for current. */
  confirmCurrent(): Promise<void>;
}

/** Bytes around and between the entries of an answer. */
export interface ListingFraming {
  open?: Uint8Array;
  separator?: Uint8Array;
  close?: Uint8Array;
}

interface Entry {
  readonly resource: string;
  /** When it stops being listed (its lease's expiry), unless renewed. */
  until: number;
  bytes: Uint8Array;
}

/**
 * Changes marked before an answer, beyond twice the entries: nobody has
 * listed for long while names kept changing, so the cache is dropped rather
 * than let the marks grow (the next answer rebuilds it).
 */
const DIRTY_SLACK = 4_096;

/**
 * A listing kept as encoded bytes, one entry per held resource, so that a
 * listing of 10,000 locks is a concatenation instead of 10,000 conversions
 * and serialisations (issue 12). Changes only mark their resource; the next
 * answer re-encodes the marked entries, so renewals nobody lists cost a Set
 * insertion. Answers are exactly what encoding `list()` afresh gives: live
 * entries (expiry is checked at answer time), in name order, prefix-filtered.
 *
 * The encoding is the edge's (protobuf bytes of a repeated field's element,
 * or one JSON object); what is listed stays the manager's.
 */
export class LockListing {
  /** Entries in name order. */
  private readonly sorted: Entry[] = [];
  private readonly byResource = new Map<string, Entry>();
  /** Resources changed since the last answer. */
  private readonly dirty = new Set<string>();
  private unwatch: (() => void) | undefined;
  /** The first answer's load of every entry (and later answers' wait for it). */
  private starting: Promise<void> | undefined;
  /** Whether the load finished, so marks can be counted against the entries. */
  private loaded = false;
  /** Bumped by stop(), so a load that stop() overtook leaves nothing behind. */
  private generation = 0;

  constructor(
    private readonly source: ListingSource,
    private readonly encode: (lock: ListedLock) => Uint8Array,
  ) {}

  /**
   * The live entries whose resource starts with `prefix` (and passes
   * `include`, e.g. an access policy), in name order, joined with `framing`.
   */
  async answer(prefix: string, include?: (resource: string) => boolean, framing: ListingFraming = {}): Promise<Buffer> {
    await this.source.confirmCurrent();
    // A stop() while this waited (the marks overflowed) means loading again.
    while (!this.loaded) await this.start();
    this.refresh();
    const now = this.source.clock.now();
    const parts: Uint8Array[] = [];
    for (let i = this.lowerBound(prefix); i < this.sorted.length; i++) {
      const entry = this.sorted[i]!;
      if (!entry.resource.startsWith(prefix)) break;
      if (entry.until <= now || (include && !include(entry.resource))) continue;
      parts.push(entry.bytes);
    }
    return join(parts, framing);
  }

  /** Stops following changes; the next answer starts afresh. */
  stop(): void {
    this.unwatch?.();
    this.unwatch = undefined;
    this.starting = undefined;
    this.loaded = false;
    this.generation++;
    this.sorted.length = 0;
    this.byResource.clear();
    this.dirty.clear();
  }

  private start(): Promise<void> {
    this.starting ??= this.load().catch((err: unknown) => {
      this.stop();
      throw err;
    });
    return this.starting;
  }

  private async load(): Promise<void> {
    const generation = this.generation;
    // Watch first: a change made while list() runs is marked and re-read.
    this.unwatch = this.source.watch((resource) => {
      this.dirty.add(resource);
      if (this.loaded && this.dirty.size > 2 * this.sorted.length + DIRTY_SLACK) this.stop();
    });
    const locks = await this.source.list();
    if (generation !== this.generation) return;
    for (const lock of locks) {
      const entry = this.entryOf(lock);
      this.sorted.push(entry);
      this.byResource.set(entry.resource, entry);
    }
    this.loaded = true;
  }

  private entryOf(lock: ListedLock): Entry {
    return { resource: lock.state.resource, until: blockedUntil(lock.state), bytes: this.encode(lock) };
  }

  /** Re-encodes the changed entries, adds new ones and removes ended ones. */
  private refresh(): void {
    for (const resource of this.dirty) {
      const lock = this.source.current(resource);
      const entry = this.byResource.get(resource);
      if (lock === undefined) {
        if (entry !== undefined) {
          this.sorted.splice(this.lowerBound(resource), 1);
          this.byResource.delete(resource);
        }
        continue;
      }
      if (entry === undefined) {
        const added = this.entryOf(lock);
        this.sorted.splice(this.lowerBound(resource), 0, added);
        this.byResource.set(resource, added);
        continue;
      }
      entry.until = blockedUntil(lock.state);
      entry.bytes = this.encode(lock);
    }
    this.dirty.clear();
  }

  /** Index of the first entry whose resource is not below `name`. */
  private lowerBound(name: string): number {
    let low = 0;
    let high = this.sorted.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.sorted[mid]!.resource < name) low = mid + 1;
      else high = mid;
    }
    return low;
  }
}

/** One buffer: open, the parts with separators between them, close. */
function join(parts: Uint8Array[], { open, separator, close }: ListingFraming): Buffer {
  const separatorLength = separator?.length ?? 0;
  let length = (open?.length ?? 0) + (close?.length ?? 0) + Math.max(0, parts.length - 1) * separatorLength;
  for (const part of parts) length += part.length;
  const out = Buffer.allocUnsafe(length);
  let at = 0;
  const put = (bytes: Uint8Array) => {
    out.set(bytes, at);
    at += bytes.length;
  };
  if (open) put(open);
  parts.forEach((part, i) => {
    if (i > 0 && separator) put(separator);
    put(part);
  });
  if (close) put(close);
  return out;
}
