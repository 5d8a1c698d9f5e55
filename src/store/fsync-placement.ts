/**
 * Where the lease-file store's fsyncs run (`serve --fsync`):
 * - `pool`: on libuv's thread pool. Other resources' requests go on while one
 *   waits for the disk, and concurrent grants share the lock dir's fsync
 *   (group commit). A write alone pays a thread-pool round trip.
 * - `loop`: on the event loop, as synchronous calls: the least CPU for a write
 *   alone, but every other request waits while one runs.
 * - `auto` (the default): on the pool while another write is in flight or
 *   began in the same turn of the event loop (so independent resources never
 *   wait for each other's fsyncs), and while lone fsyncs average
 *   SLOW_FSYNC_MS or more (a throttled or networked disk, where even a lone
 *   fsync would stall every request: then the other calls that change the
 *   file system go to the pool as well); on the loop otherwise.
 * Measured side by side in docs/performance.md ("fsyncs off the event loop").
 */
export const FSYNC_MODES = ["auto", "pool", "loop"] as const;

export type FsyncMode = (typeof FSYNC_MODES)[number];

/** `auto` counts the disk as slow once lone fsyncs average this long (ms): about ten pool round trips here. */
export const SLOW_FSYNC_MS = 2;
/** ... and as fast again under this (ms); the gap keeps it from flapping. */
export const FAST_FSYNC_MS = 1;
/** Weight of the newest fsync in the moving averages: about the last ten count. */
const NEWEST_WEIGHT = 0.1;
/** Lone fsyncs `auto` waits for before it calls the disk slow: a new dir's first fsync alone can take a few ms. */
const MIN_LONE_FSYNCS = 5;

/** A moving average whose first samples weigh as in a plain mean, so that the very first does not count for ten. */
class MovingAverage {
  value: number | undefined;
  samples = 0;

  add(ms: number): number {
    this.samples++;
    const weight = Math.max(NEWEST_WEIGHT, 1 / this.samples);
    return (this.value = this.value === undefined ? ms : this.value + weight * (ms - this.value));
  }
}

export class FsyncPlacement {
  readonly #all = new MovingAverage();
  readonly #lone = new MovingAverage();
  #slow = false;
  /** Writes between beginWrite and its end. */
  #inFlight = 0;
  /**
   * Writes begun in this turn of the event loop. With fsyncs on the loop two
   * writes are never in flight at once (each runs to its end before the next
   * request is read), so requests that arrived together show only here.
   */
  #thisTurn = 0;
  /** fsyncs so far, by where they ran. */
  readonly counts = { loop: 0, pool: 0 };

  constructor(
    readonly mode: FsyncMode,
    /** Told when `auto` finds the disk slow (true) or fast again (false). */
    private readonly onSlowChange?: (slow: boolean, averageMs: number) => void,
  ) {}

  /** A write (which may fsync) begins; call the function returned once it has ended. */
  beginWrite(): () => void {
    this.#inFlight++;
    if (this.#thisTurn++ === 0) setImmediate(() => (this.#thisTurn = 0));
    let ended = false;
    return () => {
      if (!ended) this.#inFlight--;
      ended = true;
    };
  }

  /** Whether the next fsync goes to the thread pool. */
  get onPool(): boolean {
    if (this.mode !== "auto") return this.mode === "pool";
    return this.#slow || !this.alone;
  }

  /**
   * `auto` on a slow disk: every file call that changes the file system
   * (create, rename, link, unlink, mkdir, rmdir) goes to the pool, not only
   * the fsyncs. There even a rename or an unlink can wait for half a second
   * (ext4's journal waits for the data writes before it), which the event
   * loop must not; on a fast disk the pool's round trips would cost more
   * than those calls take. Reads never wait for the journal and stay.
   */
  get everyCallOnPool(): boolean {
    return this.mode === "auto" && this.#slow;
  }

  /** No other write in flight or begun in this turn: only a lone fsync's time says how fast the disk is. */
  get alone(): boolean {
    return this.#inFlight <= 1 && this.#thisTurn <= 1;
  }

  /** Moving average of the timed fsyncs' durations (ms; on the pool with the wait for a thread), undefined before the first. */
  get averageMs(): number | undefined {
    return this.#all.value;
  }

  /** Records one fsync: where it ran, and how long it took when it was timed (`alone`: no other write beside it). */
  took(onPool: boolean, ms?: number, alone = false): void {
    this.counts[onPool ? "pool" : "loop"]++;
    if (ms === undefined) return;
    this.#all.add(ms);
    if (!alone) return;
    const lone = this.#lone.add(ms);
    if (this.#lone.samples < MIN_LONE_FSYNCS) return;
    const slow = this.#slow ? lone >= FAST_FSYNC_MS : lone >= SLOW_FSYNC_MS;
    if (slow === this.#slow) return;
    this.#slow = slow;
    if (this.mode === "auto") this.onSlowChange?.(slow, lone);
  }
}
