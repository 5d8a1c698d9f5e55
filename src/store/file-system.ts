import * as fs from "node:fs";
import type { FSWatcher } from "node:fs";
import type { FsyncPlacement } from "./fsync-placement.ts";

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
  /**
   * Overwrites the regular file at `path` in place with `data` if it still
   * has `identity` and exactly data's length in bytes: one durable write at
   * offset 0 (as write + fdatasync). `writing` is called right before the
   * write is issued: from then on the file may show a new mtime at the same
   * inode and size. Undefined when nothing was written (no such file,
   * another identity or length); `linked` says whether the file still had a
   * name after the write (someone may have replaced or removed it meanwhile).
   */
  overwriteSynced(path: string, identity: string, data: string, writing: () => void): Promise<OverwriteResult | undefined>;
  rename(from: string, to: string): Promise<void>;
  /** A second name for a file; fails with EEXIST instead of replacing `to` (the protocol's create-if-free). */
  link(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Creates one directory, not its parents; EEXIST if anything is at `path` (the guard's mutual exclusion). */
  makeDirectory(path: string): Promise<void>;
  /** rmdir: fails with ENOTEMPTY rather than removing what is inside. */
  removeDirectory(path: string): Promise<void>;
  /** What is at `path` itself (lstat: a symlink is reported as "other", never followed). */
  inspect(path: string): Promise<PathInfo>;
  /** fsync of a directory, so a rename or unlink in it survives a crash. */
  syncDirectory(path: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  /** Inode, mtime (ns) and size of a file, or "absent": tells one version of a file from another. */
  identity(path: string): Promise<string>;
  watch(path: string, onEvent: (filename: string | null) => void, onError: (err: Error) => void): FSWatcher;
}

export interface OverwriteResult {
  /** The file's identity after the write. */
  identity: string;
  linked: boolean;
}

export interface PathInfo {
  kind: "file" | "directory" | "other" | "absent";
  /** Modification time in ms (0 when absent). */
  mtimeMs: number;
}

// Opening a lease file to overwrite it: never through a link (a link is
// never our own file, so nothing is written), never created. O_DSYNC makes
// the write itself durable (as write + fdatasync), so it is one call on the
// thread pool.
const OVERWRITE_DURABLY = fs.constants.O_RDWR | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | fs.constants.O_DSYNC;

// A symbolic link in the lock dir is never followed (ELOOP), and what is not a
// regular file is never read as a lease (EISDIR, ENOTREG): nothing outside the
// lock dir can leak into a listing or pass for a lease.
// O_NONBLOCK: opening a FIFO must not wait for a writer.
const READ_NO_FOLLOW = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

/**
 * Deno 2.9 under --allow-read=DIR ignores O_NOFOLLOW and opens through a
 * symlink (even to a target outside DIR). There, and only there (the read of
 * a lease file is on every grant's path), the path itself is checked with
 * lstat first, and anything swapped in between is refused (sameFile).
 */
const OPEN_MAY_FOLLOW_LINKS = "Deno" in globalThis;

/** What was opened is the regular file lstat saw before (when lstat was needed at all). */
function sameFile(opened: fs.Stats, before: fs.Stats | undefined, path: string): fs.Stats {
  if (before === undefined || (opened.ino === before.ino && opened.dev === before.dev)) return opened;
  throw Object.assign(new Error(`ENOTREG: ${path} changed while it was opened`), { code: "ENOTREG", path });
}

function regularFile(stat: fs.Stats, path: string): fs.Stats {
  if (stat.isFile()) return stat;
  const code = stat.isDirectory() ? "EISDIR" : "ENOTREG";
  throw Object.assign(new Error(`${code}: not a regular file, open '${path}'`), { code, path });
}

const ABSENT_PATH: PathInfo = { kind: "absent", mtimeMs: 0 };

function pathInfoOf(stat: fs.Stats | undefined): PathInfo {
  if (stat === undefined) return ABSENT_PATH;
  const kind = stat.isFile() ? "file" : stat.isDirectory() ? "directory" : "other";
  return { kind, mtimeMs: stat.mtimeMs };
}

// Synchronous calls behind the async interface. Each call takes microseconds
// on a local disk, and measured here a synchronous durable write costs about
// half of the same through fs.promises, whose thread-pool round trips
// dominate. The store's default is this with its fsyncs, the calls that wait
// for the disk, placed by fileSystemPlacingFsyncs (below). See
// docs/performance.md.
export const nodeFileSystem: FileSystem = {
  readFileWithMtime: async (path) => {
    const before = OPEN_MAY_FOLLOW_LINKS ? regularFile(fs.lstatSync(path), path) : undefined;
    const fd = fs.openSync(path, READ_NO_FOLLOW);
    try {
      const stat = sameFile(regularFile(fs.fstatSync(fd), path), before, path);
      return { text: fs.readFileSync(fd, "utf8"), mtimeMs: stat.mtimeMs, identity: identityOf(stat, () => fs.fstatSync(fd, { bigint: true })) };
    } finally {
      fs.closeSync(fd);
    }
  },
  writeNewFileSynced: (path, data) => writeNewFile(path, data, fs.fsyncSync),
  overwriteSynced: (path, identity, data, writing) => overwriteDurably(path, identity, data, writing),
  rename: async (from, to) => fs.renameSync(from, to),
  link: async (from, to) => fs.linkSync(from, to),
  unlink: async (path) => fs.unlinkSync(path),
  makeDirectory: async (path) => fs.mkdirSync(path),
  removeDirectory: async (path) => fs.rmdirSync(path),
  inspect: async (path) => pathInfoOf(fs.lstatSync(path, { throwIfNoEntry: false })),
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
    const stat = fs.statSync(path, { throwIfNoEntry: false });
    return stat === undefined ? ABSENT : identityOf(stat, () => fs.statSync(path, { bigint: true }));
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
    const before = OPEN_MAY_FOLLOW_LINKS ? regularFile(await fs.promises.lstat(path), path) : undefined;
    const handle = await fs.promises.open(path, READ_NO_FOLLOW);
    try {
      const stat = sameFile(regularFile(await handle.stat(), path), before, path);
      return { text: await handle.readFile("utf8"), mtimeMs: stat.mtimeMs, identity: identityOf(stat, () => fs.fstatSync(handle.fd, { bigint: true })) };
    } finally {
      await handle.close();
    }
  },
  writeNewFileSynced: (path, data) => writeNewFileOnPool(path, data, fsyncOnPool),
  // Its waiting part is on the pool already; the checks are microseconds.
  overwriteSynced: (path, identity, data, writing) => overwriteDurably(path, identity, data, writing),
  rename: (from, to) => fs.promises.rename(from, to),
  link: (from, to) => fs.promises.link(from, to),
  unlink: (path) => fs.promises.unlink(path),
  makeDirectory: async (path) => {
    await fs.promises.mkdir(path);
  },
  removeDirectory: (path) => fs.promises.rmdir(path),
  inspect: async (path) => {
    try {
      return pathInfoOf(await fs.promises.lstat(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return ABSENT_PATH;
      throw err;
    }
  },
  syncDirectory: (path) => sharedDirectorySync.sync(path),
  mkdir: async (path) => {
    await fs.promises.mkdir(path, { recursive: true });
  },
  readdir: (path) => fs.promises.readdir(path),
  identity: async (path) => {
    try {
      return identityOf(await fs.promises.stat(path), () => fs.statSync(path, { bigint: true }));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return ABSENT;
      throw err;
    }
  },
  watch: (path, onEvent, onError) => nodeFileSystem.watch(path, onEvent, onError),
};

/** Creates `path` exclusively, writes `data` and syncs it with `fsync`: the calls around the fsync are synchronous. */
async function writeNewFile(path: string, data: string, fsync: (fd: number) => void | Promise<void>): Promise<string> {
  const fd = fs.openSync(path, "wx", 0o644);
  try {
    fs.writeFileSync(fd, data, "utf8");
    await fsync(fd);
    return identityOf(fs.fstatSync(fd), () => fs.fstatSync(fd, { bigint: true }));
  } finally {
    fs.closeSync(fd);
  }
}

/** writeNewFile with every call on the thread pool. */
async function writeNewFileOnPool(path: string, data: string, fsync: (fd: number) => Promise<void>): Promise<string> {
  const handle = await fs.promises.open(path, "wx", 0o644);
  try {
    await handle.writeFile(data, "utf8");
    await fsync(handle.fd);
    return identityOf(await handle.stat(), () => fs.fstatSync(handle.fd, { bigint: true }));
  } finally {
    await handle.close();
  }
}

/** fsync of an open file on the thread pool. */
function fsyncOnPool(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
}

/** One fsync of a directory: opened and closed on the event loop (metadata, microseconds), synced on the pool. */
export async function syncDirectoryOnPool(path: string): Promise<void> {
  const fd = fs.openSync(path, "r");
  try {
    await fsyncOnPool(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Group commit for directory fsyncs: a caller's rename is durable once an
 * fsync of the dir that *started after* the rename has finished. While one
 * runs, later callers share the single next one instead of queueing an fsync
 * each, so concurrent writes cost one directory fsync per batch.
 */
export class SharedDirectorySync {
  private readonly syncs = new Map<string, { running: Promise<void>; next?: Promise<void> }>();

  constructor(private readonly syncOnce: (path: string) => Promise<void> = syncDirectoryOnPool) {}

  sync(path: string): Promise<void> {
    const current = this.syncs.get(path);
    if (current === undefined) return this.start(path);
    // The running fsync may have started before our rename: wait for the next.
    current.next ??= current.running.then(
      () => this.start(path),
      () => this.start(path),
    );
    return current.next;
  }

  private start(path: string): Promise<void> {
    const entry: { running: Promise<void>; next?: Promise<void> } = { running: this.syncOnce(path) };
    this.syncs.set(path, entry);
    const forget = () => {
      if (this.syncs.get(path) === entry && entry.next === undefined) this.syncs.delete(path);
    };
    entry.running.then(forget, forget);
    return entry.running;
  }
}

/** Shared by every writer of the process that syncs on the pool: background rewrites and pooled grants batch together. */
const sharedDirectorySync = new SharedDirectorySync();

/**
 * nodeFileSystem with its two fsyncs (a new file's, a directory's) placed by
 * `placement` (see fsync-placement.ts): on the event loop, or on the thread
 * pool with directory fsyncs shared (group commit). A new file's fsync is
 * timed, for metrics (a shared directory fsync's wait is not one fsync's
 * time). With `auto` on a slow disk every call that changes the file system
 * goes to the pool too (`pool`, the thread pool's file system); reads stay.
 * Tests inject the shared directory fsyncs, the file fsync on the pool and
 * `pool`.
 */
export function fileSystemPlacingFsyncs(
  placement: FsyncPlacement,
  {
    directories = sharedDirectorySync,
    fsyncFileOnPool = fsyncOnPool,
    pool = threadPoolFileSystem,
  }: { directories?: SharedDirectorySync; fsyncFileOnPool?: (fd: number, path: string) => Promise<void>; pool?: FileSystem } = {},
): FileSystem {
  const fsyncPlaced = async (fd: number, path: string) => {
    const onPool = placement.onPool;
    const alone = placement.alone;
    const start = performance.now();
    if (onPool) await fsyncFileOnPool(fd, path);
    else fs.fsyncSync(fd);
    placement.took(onPool, performance.now() - start, alone);
  };
  const syncDirectory = (path: string) => {
    const onPool = placement.onPool;
    placement.took(onPool);
    return onPool ? directories.sync(path) : nodeFileSystem.syncDirectory(path);
  };
  // Only the calls that change the file system move on a slow disk. Reads
  // stay on the loop: they never wait for the journal, and on the pool they
  // would queue behind the writes that do (a renewal's stat, measured: p50
  // 90 ms instead of 0.04 on a throttled disk).
  const onPoolWhenSlow =
    <A extends unknown[], R>(onLoop: (...args: A) => R, onPool: (...args: A) => R) =>
    (...args: A): R =>
      (placement.everyCallOnPool ? onPool : onLoop)(...args);
  return {
    ...nodeFileSystem,
    writeNewFileSynced: onPoolWhenSlow(
      (path: string, data: string) => writeNewFile(path, data, (fd) => fsyncPlaced(fd, path)),
      (path: string, data: string) => writeNewFileOnPool(path, data, (fd) => fsyncPlaced(fd, path)),
    ),
    rename: onPoolWhenSlow(nodeFileSystem.rename, pool.rename),
    link: onPoolWhenSlow(nodeFileSystem.link, pool.link),
    unlink: onPoolWhenSlow(nodeFileSystem.unlink, pool.unlink),
    makeDirectory: onPoolWhenSlow(nodeFileSystem.makeDirectory, pool.makeDirectory),
    removeDirectory: onPoolWhenSlow(nodeFileSystem.removeDirectory, pool.removeDirectory),
    mkdir: onPoolWhenSlow(nodeFileSystem.mkdir, pool.mkdir),
    syncDirectory,
  };
}

/**
 * FileSystem.overwriteSynced for the event loop: the open and the checks
 * are synchronous calls (microseconds, and they never wait for the ext4
 * journal); the write, which updates the mtime and so may wait for a journal
 * commit, and which waits for the disk, goes to the thread pool, so neither
 * stalls other requests and concurrent writes overlap. `afterWrite` (tests)
 * runs between the write and the final check.
 */
export async function overwriteDurably(
  path: string,
  identity: string,
  data: string,
  writing: () => void,
  afterWrite?: () => void,
): Promise<OverwriteResult | undefined> {
  const bytes = Buffer.from(data, "utf8");
  let fd: number;
  try {
    fd = fs.openSync(path, OVERWRITE_DURABLY);
  } catch (err) {
    if (isNotOurFile(err)) return undefined;
    throw err;
  }
  try {
    const before = fs.fstatSync(fd);
    if (!before.isFile() || identityOf(before, () => fs.fstatSync(fd, { bigint: true })) !== identity || before.size !== bytes.length) return undefined;
    writing();
    for (let done = 0; done < bytes.length; ) done += await writeAt(fd, bytes, done);
    afterWrite?.();
    const after = fs.fstatSync(fd);
    return { identity: identityOf(after, () => fs.fstatSync(fd, { bigint: true })), linked: after.nlink >= 1 };
  } finally {
    fs.closeSync(fd);
  }
}

/** One write of `bytes` from `offset` to the same file offset, on the thread pool; resolves to the bytes written. */
function writeAt(fd: number, bytes: Buffer, offset: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, bytes, offset, bytes.length - offset, offset, (err, written) => (err ? reject(err) : resolve(written))));
}

/** Whether two identities (FileSystem.identity) name the same file at the same size: an in-place write changes neither. */
export function sameFileAndSize(a: string, b: string): boolean {
  const partsA = a.split(":");
  const partsB = b.split(":");
  return partsA.length === 3 && partsB.length === 3 && partsA[0] === partsB[0] && partsA[2] === partsB[2];
}

/** Errors of opening R.lock that mean "not the file we wrote": nothing to overwrite. */
function isNotOurFile(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ELOOP" || code === "EISDIR" || code === "ENXIO";
}

/** The identity of a file that does not exist. */
export const ABSENT = "absent";

/**
 * Inode, mtime and size: one version of a file told from another. From the
 * plain Stats (a BigIntStats costs about 1 KB of garbage per call, several
 * calls per renewal); its mtime in milliseconds has a resolution of about
 * 0.25 µs today, far below the time between two writes of one file. An
 * inode number past 2^53 (large XFS) is not exact as a number: then the
 * exact stat is taken (`exact`), and that file's identities all come from it.
 */
export function identityOf(stat: Pick<fs.Stats, "ino" | "mtimeMs" | "size">, exact: () => Pick<fs.BigIntStats, "ino" | "mtimeNs" | "size">): string {
  if (Number.isSafeInteger(stat.ino)) return `${stat.ino}:${stat.mtimeMs}:${stat.size}`;
  const precise = exact();
  return `${precise.ino}:${precise.mtimeNs}n:${precise.size}`;
}
