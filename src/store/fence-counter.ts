import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { StoreFailureError } from "../core/errors.ts";
import { CommitConflictError } from "./commit-conflict.ts";
import type { FileSystem } from "./file-system.ts";
import { parseFence } from "./lease-file-format.ts";
import type { LockDirLayout } from "./lock-dir-layout.ts";
import { toStoreError } from "./store-error.ts";

/**
 * What the fencing counter of a resource holds (docs/protocol.md §2): the
 * version 2 directory with one file named the last token issued, a version 1
 * counter file, or nothing yet.
 */
export type FenceState =
  | { kind: "directory"; token: number }
  | { kind: "file"; token: number }
  /** A version 1 counter moved aside by a conversion that has not finished (it names a token floor). */
  | { kind: "retired"; token: number }
  | { kind: "none"; token: 0 };

const TOKEN_NAME = /^(0|[1-9][0-9]{0,15})$/;

/**
 * The fencing counter as a compare-and-swap: `R.lock.fence/` holds one file
 * named the last token issued, and a token is issued by renaming that file
 * to the new token. The rename fails for everyone whose view of the counter
 * is out of date (the old name is gone), so no pause of any length can make
 * a writer issue a token twice or below one already issued.
 */
export class FenceCounter {
  constructor(
    private readonly layout: LockDirLayout,
    private readonly fs: FileSystem,
  ) {}

  async read(resource: string): Promise<FenceState> {
    const dir = this.layout.fenceFile(resource);
    // An empty listing or two names can only be a rename seen half-way by
    // readdir (or a hand edit): look again before calling it corrupt.
    for (let attempt = 0; attempt < 3; attempt++) {
      let entries: string[];
      try {
        entries = await this.fs.readdir(dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT") return this.readRetired(resource);
        if (code === "ENOTDIR") return this.readVersion1(resource);
        throw toStoreError("reading the fencing counter", dir, err);
      }
      if (entries.length === 1 && TOKEN_NAME.test(entries[0]!) && Number(entries[0]) <= Number.MAX_SAFE_INTEGER) {
        return { kind: "directory", token: Number(entries[0]) };
      }
    }
    // Guessing a counter could hand out a token twice: refuse instead.
    throw new StoreFailureError(
      `the fencing counter ${dir} must hold exactly one file named the last token issued; restore it with a value at least as high as every token issued`,
      dir,
    );
  }

  /**
   * Issues `max(current, floor) + 1` (or exactly `floor` with `exact`, to
   * raise the counter to a token already issued). Throws CommitConflictError
   * when someone else moved the counter since `current` was read. With
   * `lockDirSyncFollows` the caller fsyncs the lock dir before anyone learns
   * the token (a grant does, for its lease file), and a counter made for the
   * first time (an entry of the lock dir) is made durable by that same fsync.
   */
  async advance(resource: string, current: FenceState, floor: number, options: { exact?: boolean; lockDirSyncFollows?: boolean } = {}): Promise<number> {
    const exact = options.exact ?? false;
    const token = exact ? Math.max(current.token, floor) : Math.max(current.token, floor) + 1;
    if (token > Number.MAX_SAFE_INTEGER) {
      throw new StoreFailureError(`the fencing counter of ${resource} is exhausted`, this.layout.fenceFile(resource));
    }
    if (current.kind === "directory") await this.renameToken(resource, current.token, token);
    else await this.create(resource, current, token, options.lockDirSyncFollows ?? false);
    return token;
  }

  /** True when `token` is still the last one issued (nobody issued a later one). */
  async isStill(resource: string, token: number): Promise<boolean> {
    const path = join(this.layout.fenceFile(resource), String(token));
    try {
      return (await this.fs.inspect(path)).kind === "file";
    } catch (err) {
      throw toStoreError("checking the fencing counter", path, err);
    }
  }

  private async renameToken(resource: string, from: number, to: number): Promise<void> {
    const dir = this.layout.fenceFile(resource);
    if (from !== to) {
      try {
        await this.fs.rename(join(dir, String(from)), join(dir, String(to)));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new CommitConflictError(`the fencing counter of ${resource} moved past ${from}`);
        throw toStoreError("advancing the fencing counter", dir, err);
      }
    }
    await this.sync(dir);
  }

  /**
   * The first version 2 write: a temp dir holding the token's file is renamed
   * into place, which fails if anyone made the counter meanwhile. A version 1
   * counter file is first moved aside to `R.lock.fence.v1`, never removed: a
   * writer paused between the move and the rename leaves the counter absent,
   * and whoever finds it absent reads the moved file's value as its floor
   * (see readRetired), so no token below it is ever issued.
   */
  private async create(resource: string, current: FenceState, token: number, lockDirSyncFollows: boolean): Promise<void> {
    const dir = this.layout.fenceFile(resource);
    const temp = this.layout.tempFileFor(resource, randomBytes(6).toString("hex"));
    const tokenFile = join(temp, String(token));
    try {
      await this.fs.makeDirectory(temp);
      await this.fs.writeNewFileSynced(tokenFile, "");
      await this.sync(temp);
      if (current.kind === "file") await this.retireVersion1(resource, current.token);
      await this.fs.rename(temp, dir);
    } catch (err) {
      await this.fs.unlink(tokenFile).catch(() => {});
      await this.fs.removeDirectory(temp).catch(() => {});
      const code = (err as NodeJS.ErrnoException).code;
      if (err instanceof CommitConflictError) throw err;
      if (code === "EEXIST" || code === "ENOTEMPTY" || code === "ENOTDIR" || code === "EISDIR") {
        throw new CommitConflictError(`the fencing counter of ${resource} was written by someone else`);
      }
      throw toStoreError("creating the fencing counter", dir, err);
    }
    if (!lockDirSyncFollows) await this.sync(this.layout.dir);
  }

  private async retireVersion1(resource: string, token: number): Promise<void> {
    const path = this.layout.fenceFile(resource);
    // Re-read: a version 1 participant may have raised it since.
    const now = await this.readVersion1(resource);
    if (now.kind !== "file" || now.token !== token) {
      throw new CommitConflictError(`the version 1 fencing counter of ${resource} moved past ${token}`);
    }
    try {
      // A directory (someone converted it meanwhile) cannot replace the retired file: ENOTDIR/EISDIR.
      await this.fs.rename(path, this.layout.retiredFenceFile(resource));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "EISDIR" || code === "ENOTDIR") throw new CommitConflictError(`the fencing counter of ${resource} changed`);
      throw err;
    }
  }

  /** No counter: nothing was ever issued, unless a conversion moved a version 1 counter aside. */
  private readRetired(resource: string): Promise<FenceState> {
    return this.readVersion1File(resource, this.layout.retiredFenceFile(resource), "retired");
  }

  private readVersion1(resource: string): Promise<FenceState> {
    return this.readVersion1File(resource, this.layout.fenceFile(resource), "file");
  }

  /** A counter file in the version 1 format, at its own place or moved aside. */
  private async readVersion1File(resource: string, path: string, kind: "file" | "retired"): Promise<FenceState> {
    const what = kind === "retired" ? "the retired fencing counter" : "the fencing counter";
    let text: string;
    try {
      text = (await this.fs.readFileWithMtime(path)).text;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return { kind: "none", token: 0 };
      if (code === "EISDIR" && kind === "file") throw new CommitConflictError(`the fencing counter of ${resource} was converted meanwhile`);
      throw toStoreError(`reading ${what}`, path, err);
    }
    const token = parseFence(text, resource);
    // Guessing a counter could hand out a token twice: refuse instead.
    if (typeof token === "string") {
      throw new StoreFailureError(`${what} ${path} is corrupt (${token}); restore it, or raise it above every token issued`, path);
    }
    return { kind, token };
  }

  private async sync(dir: string): Promise<void> {
    try {
      await this.fs.syncDirectory(dir);
    } catch (err) {
      throw toStoreError("syncing the fencing counter", dir, err);
    }
  }
}
