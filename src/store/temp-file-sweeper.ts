import { join } from "node:path";
import type { FileSystem } from "./file-system.ts";
import type { Clock } from "../core/clock.ts";
import type { LockDirLayout } from "./lock-dir-layout.ts";

/** Temp files older than this are left-overs of a crash (docs/protocol.md §1). */
export const TEMP_FILE_MAX_AGE_MS = 60_000;
const SWEEP_INTERVAL_MS = 60_000;

/**
 * Removes left-over temp files and probes, including the service's own after
 * a SIGKILL. A writer paused so long that its temp file is swept only fails
 * its commit (the rename or link finds nothing), which the commit rule allows.
 */
export class TempFileSweeper {
  constructor(
    private readonly layout: LockDirLayout,
    private readonly fs: FileSystem,
    private readonly clock: Clock,
    private readonly warn: (message: string) => void,
  ) {}

  /** Sweeps now and then every minute; returns the stop function. */
  start(): () => void {
    const sweep = () => void this.sweep().catch((err: Error) => this.warn(`sweeping temp files failed: ${err.message}`));
    sweep();
    const timer = setInterval(sweep, SWEEP_INTERVAL_MS);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** Removes every temp entry older than TEMP_FILE_MAX_AGE_MS; returns how many. */
  async sweep(): Promise<number> {
    let removed = 0;
    for (const entry of await this.fs.readdir(this.layout.dir)) {
      if (!this.layout.isTempEntry(entry)) continue;
      const path = join(this.layout.dir, entry);
      const found = await this.fs.inspect(path);
      if (found.kind === "absent" || this.clock.now() - found.mtimeMs < TEMP_FILE_MAX_AGE_MS) continue;
      try {
        if (found.kind === "directory") {
          // The fencing counter's first write builds a dir holding one file.
          for (const inner of await this.fs.readdir(path)) await this.fs.unlink(join(path, inner));
          await this.fs.removeDirectory(path);
        } else {
          await this.fs.unlink(path);
        }
        removed++;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
    if (removed > 0) this.warn(`removed ${removed} left-over temp file(s) from ${this.layout.dir}`);
    return removed;
  }
}
