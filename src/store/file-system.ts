import * as fs from "node:fs";
import type { FSWatcher, Stats } from "node:fs";

/**
 * The file operations LeaseFileStore uses, injectable so tests can make any of
 * them fail (EACCES, ENOSPC, EIO) without root tricks.
 */
export interface FileSystem {
  /** Contents, modification time (ms) and identity of a file, read through one handle. */
  readFileWithMtime(path: string): Promise<{ text: string; mtimeMs: number; identity: string }>;
  /**
   * Creates `path` exclusively, writes `data`, fsyncs and closes it. Returns
   * its identity (as `identity` would), which a rename does not change.
   */
  writeNewFileSynced(path: string, data: string): Promise<string>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** fsync of a directory, so a rename or unlink in it survives a crash. */
  syncDirectory(path: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  /** Inode, mtime (ns) and size of a file, or "absent": tells one version of a file from another. */
  identity(path: string): Promise<string>;
  watch(path: string, onEvent: (filename: string | null) => void, onError: (err: Error) => void): FSWatcher;
}

/**
 * A lease or fence path that is a symbolic link (never followed: it could
 * point anywhere on the machine) or not a regular file (a directory, a
 * FIFO). The store reports it as unreadable; nothing reads or writes through it.
 */
export class NotRegularFileError extends Error {
  readonly code = "ENOTREGULAR";
  constructor(
    readonly path: string,
    /** "a symbolic link", "a directory", "not a regular file". */
    readonly what: string,
    /** The path's own mtime (lstat), for how long it blocks the resource. */
    readonly mtimeMs: number,
  ) {
    super(`${path} is ${what}`);
    this.name = "NotRegularFileError";
  }
}

// O_NOFOLLOW: a symlink fails with ELOOP instead of being followed.
// O_NONBLOCK: opening a FIFO must not wait for a writer.
const READ_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0);

function notRegular(path: string, stat: fs.BigIntStats): NotRegularFileError {
  const what = stat.isSymbolicLink() ? "a symbolic link" : stat.isDirectory() ? "a directory" : "not a regular file";
  return new NotRegularFileError(path, what, msOf(stat.mtimeNs));
}

/**
 * The path's own stat, refusing anything but a regular file. Checked before
 * opening as well as by O_NOFOLLOW: Deno 2.9 under --allow-read=DIR opens
 * through a symlink despite O_NOFOLLOW (even to a target outside DIR).
 */
function regularFileBeforeOpen(path: string, stat: fs.BigIntStats): fs.BigIntStats {
  if (!stat.isFile()) throw notRegular(path, stat);
  return stat;
}

/** What was opened is the regular file lstat saw, not something swapped in since (or a link followed). */
function assertOpenedRegular(path: string, before: fs.BigIntStats, opened: fs.BigIntStats): void {
  if (opened.isFile() && opened.ino === before.ino && opened.dev === before.dev) return;
  const now = fs.lstatSync(path, { bigint: true, throwIfNoEntry: false });
  throw notRegular(path, now !== undefined && !now.isFile() ? now : opened);
}

// The default implementation makes synchronous calls behind the async
// interface. Each call takes microseconds on a local disk (an fsync a fraction
// of a millisecond), and measured here a synchronous durable write costs about
// half of the same through fs.promises, whose thread-pool round trips dominate.
// See docs/performance.md.
export const nodeFileSystem: FileSystem = {
  readFileWithMtime: async (path) => {
    const before = regularFileBeforeOpen(path, fs.lstatSync(path, { bigint: true }));
    const fd = fs.openSync(path, READ_FLAGS);
    try {
      const stat = fs.fstatSync(fd, { bigint: true });
      assertOpenedRegular(path, before, stat);
      return { text: fs.readFileSync(fd, "utf8"), mtimeMs: msOf(stat.mtimeNs), identity: identityOf(stat) };
    } finally {
      fs.closeSync(fd);
    }
  },
  writeNewFileSynced: async (path, data) => {
    const fd = fs.openSync(path, "wx", 0o644);
    try {
      fs.writeFileSync(fd, data, "utf8");
      fs.fsyncSync(fd);
      return identityOf(fs.fstatSync(fd, { bigint: true }));
    } finally {
      fs.closeSync(fd);
    }
  },
  rename: async (from, to) => fs.renameSync(from, to),
  unlink: async (path) => fs.unlinkSync(path),
  syncDirectory: async (path) => {
    const fd = fs.openSync(path, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  },
  mkdir: async (path) => {
    fs.mkdirSync(path, { recursive: true });
  },
  readdir: async (path) => fs.readdirSync(path),
  identity: async (path) => {
    const stat = fs.statSync(path, { bigint: true, throwIfNoEntry: false });
    return stat === undefined ? ABSENT : identityOf(stat);
  },
  watch(path, onEvent, onError) {
    const watcher = fs.watch(path, { persistent: false }, (_event, filename) => onEvent(filename ?? null));
    watcher.on("error", onError);
    return watcher;
  },
};

/**
 * The same operations on libuv's thread pool, for work nobody is waiting for
 * (pushing out renewal horizons): a caller on the event loop must not be held
 * up by a background fsync.
 */
export const threadPoolFileSystem: FileSystem = {
  readFileWithMtime: async (path) => {
    const before = regularFileBeforeOpen(path, await fs.promises.lstat(path, { bigint: true }));
    const handle = await fs.promises.open(path, READ_FLAGS);
    try {
      const stat = await handle.stat({ bigint: true });
      assertOpenedRegular(path, before, stat);
      return { text: await handle.readFile("utf8"), mtimeMs: msOf(stat.mtimeNs), identity: identityOf(stat) };
    } finally {
      await handle.close();
    }
  },
  writeNewFileSynced: async (path, data) => {
    const handle = await fs.promises.open(path, "wx", 0o644);
    try {
      await handle.writeFile(data, "utf8");
      await handle.sync();
      return identityOf(await handle.stat({ bigint: true }));
    } finally {
      await handle.close();
    }
  },
  rename: (from, to) => fs.promises.rename(from, to),
  unlink: (path) => fs.promises.unlink(path),
  syncDirectory: (path) => coalescedDirectorySync(path),
  mkdir: async (path) => {
    await fs.promises.mkdir(path, { recursive: true });
  },
  readdir: (path) => fs.promises.readdir(path),
  identity: async (path) => {
    try {
      return identityOf(await fs.promises.stat(path, { bigint: true }));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return ABSENT;
      throw err;
    }
  },
  watch: (path, onEvent, onError) => nodeFileSystem.watch(path, onEvent, onError),
};

async function syncDirectoryOnce(path: string): Promise<void> {
  const handle = await fs.promises.open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

interface DirectorySync {
  running: Promise<void>;
  /** The fsync that starts when `running` ends, shared by everyone who asked meanwhile. */
  next?: Promise<void>;
}

const directorySyncs = new Map<string, DirectorySync>();

/**
 * Group commit for directory fsyncs: a caller's rename is durable once an
 * fsync of the dir that *started after* the rename has finished. While one
 * runs, later callers share the single next one instead of queueing an fsync
 * each, so concurrent background writes cost one directory fsync per batch.
 */
function coalescedDirectorySync(path: string): Promise<void> {
  const current = directorySyncs.get(path);
  if (current === undefined) return startDirectorySync(path);
  // The running fsync may have started before our rename: wait for the next.
  current.next ??= current.running.then(
    () => startDirectorySync(path),
    () => startDirectorySync(path),
  );
  return current.next;
}

function startDirectorySync(path: string): Promise<void> {
  const entry: DirectorySync = { running: syncDirectoryOnce(path) };
  directorySyncs.set(path, entry);
  const forget = () => {
    if (directorySyncs.get(path) === entry && entry.next === undefined) directorySyncs.delete(path);
  };
  entry.running.then(forget, forget);
  return entry.running;
}

/** The identity of a file that does not exist. */
export const ABSENT = "absent";

/** Milliseconds as fs.Stats.mtimeMs computes them, so both APIs agree to the last digit. */
function msOf(ns: bigint): number {
  return Number(ns / 1_000_000_000n) * 1e3 + Number(ns % 1_000_000_000n) / 1e6;
}

function identityOf(stat: fs.BigIntStats): string {
  return `${stat.ino}:${stat.mtimeNs}:${stat.size}`;
}

type Callback<T = void> = (err: NodeJS.ErrnoException | null, value?: T) => void;

/** Runs a synchronous call and reports it Node-callback style on the next tick. */
function viaCallback<T>(work: () => T, callback: Callback<T>): void {
  let value: T;
  try {
    value = work();
  } catch (err) {
    process.nextTick(callback, err as NodeJS.ErrnoException);
    return;
  }
  process.nextTick(callback, null, value);
}

export type GuardFileSystem = typeof guardFileSystem;

/** The guard's file calls on the thread pool, for background work (see threadPoolFileSystem). */
export const threadPoolGuardFileSystem: GuardFileSystem = {
  mkdir: (path, callback) => fs.mkdir(path, (err) => callback(err)),
  rmdir: (path, callback) => fs.rmdir(path, (err) => callback(err)),
  rmdirSync: (path) => fs.rmdirSync(path),
  stat: (path, callback) => fs.stat(path, callback),
  utimes: (path, atime, mtime, callback) => fs.utimes(path, atime, mtime, (err) => callback(err)),
  realpath: (path, callback) => fs.realpath(path, callback),
};

/**
 * The callback-style fs that proper-lockfile calls for the guard directory
 * (mkdir, stat, rmdir, utimes), backed by synchronous calls for the same reason.
 */
export const guardFileSystem = {
  mkdir: (path: string, callback: Callback) => viaCallback(() => void fs.mkdirSync(path), callback),
  rmdir: (path: string, callback: Callback) => viaCallback(() => fs.rmdirSync(path), callback),
  rmdirSync: (path: string) => fs.rmdirSync(path),
  stat: (path: string, callback: Callback<Stats>) => viaCallback(() => fs.statSync(path), callback),
  utimes: (path: string, atime: Date, mtime: Date, callback: Callback) =>
    viaCallback(() => fs.utimesSync(path, atime, mtime), callback),
  realpath: (path: string, callback: Callback<string>) => viaCallback(() => fs.realpathSync(path), callback),
};
