import type { Clock } from "../core/clock.ts";
import { StoreFailureError } from "../core/errors.ts";
import type { FileSystem } from "./file-system.ts";
import { CommitConflictError } from "./commit-conflict.ts";
import type { PauseHook } from "./stop-hook.ts";
import { toStoreError } from "./store-error.ts";

/**
 * The guard every writer of the file protocol takes around a read-check-write
 * (docs/protocol.md §3). These numbers are part of the protocol: a participant
 * using other values could break a live guard or commit after its own guard
 * was broken.
 */
export const GUARD_STALE_MS = 10_000;
/**
 * A step may commit only this long after it took its guard: half the
 * staleness, so a guard that someone else may have broken as stale is never
 * committed under (docs/protocol.md §4, the commit rule).
 */
export const COMMIT_DEADLINE_MS = 5_000;
// Waiting for a busy guard spans more than GUARD_STALE_MS, so a guard left by
// a crashed process is broken within one attempt instead of failing the caller.
const GUARD_WAIT_MS = 15_000;
const GUARD_BACKOFF = { firstMs: 2, factor: 1.3, maxMs: 100 };

/** A guard this writer holds: the deadline of its commits, and its release. */
export class GuardHold {
  constructor(
    readonly path: string,
    /** Monotonic time read just before the mkdir that took the guard. */
    private readonly takenAt: number,
    /** Wall time read just before that mkdir: the guard's own mtime is not earlier. */
    private readonly takenAtWall: number,
    private readonly clock: Clock,
    private readonly fs: FileSystem,
  ) {}

  /** True while this writer may still commit under the guard. */
  mayCommit(): boolean {
    return this.clock.monotonic() - this.takenAt < COMMIT_DEADLINE_MS;
  }

  /** Throws CommitConflictError once the deadline has passed: nothing may be committed. */
  checkDeadline(): void {
    const held = this.clock.monotonic() - this.takenAt;
    if (held >= COMMIT_DEADLINE_MS) {
      throw new CommitConflictError(`the guard ${this.path} was held ${Math.round(held)} ms, past the ${COMMIT_DEADLINE_MS} ms commit deadline`);
    }
  }

  /**
   * Removes the guard, unless this writer was held up so long that someone
   * may have broken it and taken a new one: a guard made after ours (a later
   * mtime than a clock step could explain) is theirs and stays.
   */
  async release(): Promise<void> {
    if (!this.mayCommit()) {
      const found = await this.fs.inspect(this.path);
      if (found.kind !== "directory" || found.mtimeMs > this.takenAtWall + COMMIT_DEADLINE_MS) return;
    }
    try {
      await this.fs.removeDirectory(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
}

/**
 * The one implementation of the guard (docs/protocol.md §3), waiting or
 * try-once: mkdir; if it exists, break it only when stale; never remove what
 * is not an empty directory.
 */
export class Guard {
  constructor(
    private readonly fs: FileSystem,
    private readonly clock: Clock,
    private readonly warn: (message: string) => void,
    private readonly makeLockDir: () => Promise<void>,
    private readonly pauseHook?: PauseHook,
  ) {}

  /** Takes the guard at `path`; with `wait: false`, undefined when it is busy. */
  async take(path: string, resource: string, wait: boolean): Promise<GuardHold | undefined> {
    const giveUpAt = this.clock.monotonic() + GUARD_WAIT_MS;
    let delay = GUARD_BACKOFF.firstMs;
    let recreatedDir = false;
    for (;;) {
      const takenAt = this.clock.monotonic();
      const takenAtWall = this.clock.now();
      try {
        await this.fs.makeDirectory(path);
        this.pauseHook?.("guard", resource);
        return new GuardHold(path, takenAt, takenAtWall, this.clock, this.fs);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT" && !recreatedDir) {
          recreatedDir = true; // the lock dir was removed under us
          await this.makeLockDir();
          continue;
        }
        if (code !== "EEXIST") throw toStoreError("taking the guard", path, err);
      }
      if (await this.breakIfStale(path)) continue;
      if (!wait) return undefined;
      if (this.clock.monotonic() >= giveUpAt) {
        throw toStoreError("taking the guard", path, Object.assign(new Error("the guard stayed busy"), { code: "ELOCKED" }));
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * GUARD_BACKOFF.factor, GUARD_BACKOFF.maxMs);
    }
  }

  /** True when the guard is gone or was stale and is now removed: try mkdir again at once. */
  private async breakIfStale(path: string): Promise<boolean> {
    let found;
    try {
      found = await this.fs.inspect(path);
    } catch (err) {
      throw toStoreError("inspecting the guard", path, err);
    }
    if (found.kind === "absent") return true;
    if (found.kind !== "directory") {
      throw new StoreFailureError(`the guard ${path} is not a directory; remove it by hand once no participant runs`, path, "ENOTDIR");
    }
    const age = this.clock.now() - found.mtimeMs;
    if (age <= GUARD_STALE_MS) return false;
    try {
      await this.fs.removeDirectory(path);
      this.warn(`broke the stale guard ${path} (${Math.round(age)} ms old)`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return true;
      if (code === "ENOTEMPTY" || code === "EEXIST") {
        throw new StoreFailureError(`the guard ${path} is not empty; remove it by hand once no participant runs`, path, code);
      }
      throw toStoreError("breaking the stale guard", path, err);
    }
    return true;
  }
}
