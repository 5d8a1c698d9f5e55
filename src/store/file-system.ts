import * as fs from "node:fs";
import type { FSWatcher } from "node:fs";
import { promisify } from "node:util";

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

export interface PathInfo {
  kind: "file" | "directory" | "other" | "absent";
  /** Modification time in ms (0 when absent). */
  mtimeMs: number;
}

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
function sameFile(opened: fs.BigIntStats, before: fs.BigIntStats | undefined, path: string): fs.BigIntStats {
  if (before === undefined || (opened.ino === before.ino && opened.dev === before.dev)) return opened;
  throw Object.assign(new Error(`ENOTREG: ${path} changed while it was opened`), { code: "ENOTREG", path });
}

function regularFile(stat: fs.BigIntStats, path: string): fs.BigIntStats {
  if (stat.isFile()) return stat;
  const code = stat.isDirectory() ? "EISDIR" : "ENOTREG";
  throw Object.assign(new Error(`${code}: not a regular file, open '${path}'`), { code, path });
}

const ABSENT_PATH: PathInfo = { kind: "absent", mtimeMs: 0 };

function pathInfoOf(stat: fs.BigIntStats): PathInfo {
  const kind = stat.isFile() ? "file" : stat.isDirectory() ? "directory" : "other";
  return { kind, mtimeMs: msOf(stat.mtimeNs) };
}

/**
 * The system calls the file operations are made of. Each is either a
 * synchronous call or a round trip to libuv's thread pool (see
 * fileSystemOver); fsync is always on the pool, since it waits for the disk.
 */
interface SystemCalls {
  open(path: string, flags: string | number, mode?: number): Promise<number>;
  fstat(fd: number): Promise<fs.BigIntStats>;
  fsync(fd: number): Promise<void>;
  read(fd: number, buffer: Buffer, length: number): Promise<number>;
  write(fd: number, buffer: Buffer, offset: number, length: number): Promise<number>;
  /** Nobody waits for a close: the caller is done with the descriptor either way. */
  close(fd: number): void;
  lstat(path: string): Promise<fs.BigIntStats>;
  stat(path: string): Promise<fs.BigIntStats>;
  rename(from: string, to: string): Promise<void>;
  link(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  mkdir(path: string, recursive: boolean): Promise<void>;
  rmdir(path: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
}

/** One thread-pool round trip per call (the callback API: fewer round trips than FileHandle's). */
const poolCalls: SystemCalls = {
  open: promisify(fs.open) as SystemCalls["open"],
  fstat: (fd) => promisify(fs.fstat)(fd, { bigint: true }) as Promise<fs.BigIntStats>,
  fsync: promisify(fs.fsync),
  read: async (fd, buffer, length) => (await promisify(fs.read)(fd, buffer, 0, length, null)).bytesRead,
  write: async (fd, buffer, offset, length) => (await promisify(fs.write)(fd, buffer, offset, length)).bytesWritten,
  close: (fd) => fs.close(fd, () => {}),
  lstat: (path) => fs.promises.lstat(path, { bigint: true }),
  stat: (path) => fs.promises.stat(path, { bigint: true }),
  rename: (from, to) => fs.promises.rename(from, to),
  link: (from, to) => fs.promises.link(from, to),
  unlink: (path) => fs.promises.unlink(path),
  mkdir: async (path, recursive) => {
    await fs.promises.mkdir(path, { recursive });
  },
  rmdir: (path) => fs.promises.rmdir(path),
  readdir: (path) => fs.promises.readdir(path),
};

/** Synchronous calls, microseconds each on a local disk; fsync, a disk wait, still goes to the pool. */
const synchronousCalls: SystemCalls = {
  open: async (path, flags, mode) => fs.openSync(path, flags, mode),
  fstat: async (fd) => fs.fstatSync(fd, { bigint: true }),
  fsync: poolCalls.fsync,
  read: async (fd, buffer, length) => fs.readSync(fd, buffer, 0, length, null),
  write: async (fd, buffer, offset, length) => fs.writeSync(fd, buffer, offset, length),
  close: (fd) => {
    try {
      fs.closeSync(fd);
    } catch {
      // as with the pool's close: nothing the caller could do about it
    }
  },
  lstat: async (path) => fs.lstatSync(path, { bigint: true }),
  stat: async (path) => fs.statSync(path, { bigint: true }),
  rename: async (from, to) => fs.renameSync(from, to),
  link: async (from, to) => fs.linkSync(from, to),
  unlink: async (path) => fs.unlinkSync(path),
  mkdir: async (path, recursive) => {
    fs.mkdirSync(path, { recursive });
  },
  rmdir: async (path) => fs.rmdirSync(path),
  readdir: async (path) => fs.readdirSync(path),
};

/**
 * The file operations over `calls()`, chosen afresh by each operation: one
 * implementation whichever way the calls are made. The calls a caller waits
 * for are kept few, because each pool round trip costs tens of microseconds
 * on an idle machine and far more on a busy one: closes are not waited for,
 * and an fstat runs beside the fsync it does not depend on. Directory fsyncs
 * shared between concurrent writers are the store's business
 * (group-commit.ts), not this layer's.
 */
function fileSystemOver(calls: () => SystemCalls): FileSystem {
  return {
    readFileWithMtime: async (path) => {
      const c = calls();
      const before = OPEN_MAY_FOLLOW_LINKS ? regularFile(await c.lstat(path), path) : undefined;
      const fd = await c.open(path, READ_NO_FOLLOW);
      try {
        // Checked before reading: a special file (a FIFO, a device) is never read.
        const stat = sameFile(regularFile(await c.fstat(fd), path), before, path);
        return { text: await readAll(c, fd, Number(stat.size)), mtimeMs: msOf(stat.mtimeNs), identity: identityOf(stat) };
      } finally {
        c.close(fd);
      }
    },
    writeNewFileSynced: async (path, data) => {
      const c = calls();
      const fd = await c.open(path, "wx", 0o644);
      try {
        await writeAll(c, fd, Buffer.from(data, "utf8"));
        // fsync changes neither inode, mtime nor size: the identity can be read beside it.
        const [stat] = await Promise.all([c.fstat(fd), c.fsync(fd)]);
        return identityOf(stat);
      } finally {
        c.close(fd);
      }
    },
    rename: (from, to) => calls().rename(from, to),
    link: (from, to) => calls().link(from, to),
    unlink: (path) => calls().unlink(path),
    makeDirectory: (path) => calls().mkdir(path, false),
    removeDirectory: (path) => calls().rmdir(path),
    inspect: (path) => unlessAbsent(calls().lstat(path).then(pathInfoOf), ABSENT_PATH),
    syncDirectory: async (path) => {
      const c = calls();
      const fd = await c.open(path, "r");
      try {
        await c.fsync(fd);
      } finally {
        c.close(fd);
      }
    },
    mkdir: (path) => calls().mkdir(path, true),
    readdir: (path) => calls().readdir(path),
    identity: (path) => unlessAbsent(calls().stat(path).then(identityOf), ABSENT),
    watch(path, onEvent, onError) {
      const watcher = fs.watch(path, { persistent: false }, (_event, filename) => onEvent(filename ?? null));
      watcher.on("error", onError);
      return watcher;
    },
  };
}

/**
 * Every call on libuv's thread pool, never a synchronous call on the event
 * loop (the pool's size is set at start by src/cli/thread-pool-size.ts).
 * Background work of the store and every test's file system use it.
 */
export const nodeFileSystem: FileSystem = fileSystemOver(() => poolCalls);

/**
 * The lease-file store's own file system (issue 12): while `alone()` says
 * that the caller's operation is the only one in flight, its calls other
 * than fsync are synchronous, so a lone operation (one client; a hand-over
 * between the waiters of one resource) pays no pool round trip per call,
 * and a request that arrives meanwhile waits only until the lone operation
 * next waits for the pool (its next fsync); as soon as another operation is
 * in flight, every call goes to the pool, so independent resources proceed
 * side by side. fsyncs (disk waits) always go to the pool.
 */
export function adaptiveFileSystem(alone: () => boolean): FileSystem {
  return fileSystemOver(() => (alone() ? synchronousCalls : poolCalls));
}

/** What `call` gives, or `absent` when there is nothing at its path (ENOENT). */
async function unlessAbsent<T>(call: Promise<T>, absent: T): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return absent;
    throw err;
  }
}

async function readAll(c: SystemCalls, fd: number, expected: number): Promise<string> {
  const chunks: Buffer[] = [];
  for (let size = Math.max(expected + 1, 512); ; size = 64 * 1024) {
    const chunk = Buffer.allocUnsafe(size);
    const bytesRead = await c.read(fd, chunk, size);
    if (bytesRead === 0) break;
    chunks.push(chunk.subarray(0, bytesRead));
    // One byte more than the size was asked for: fewer came back, so that was the end.
    if (bytesRead < size) break;
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function writeAll(c: SystemCalls, fd: number, data: Buffer): Promise<void> {
  for (let offset = 0; offset < data.length; ) {
    offset += await c.write(fd, data, offset, data.length - offset);
  }
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
