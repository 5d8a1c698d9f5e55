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

// Every call goes to libuv's thread pool, never a synchronous call on the
// event loop: a request for one resource must not wait behind the disk waits
// of another's (issue 12). The pool's size is set at start by
// src/cli/thread-pool-size.ts. Each pool round trip costs tens of
// microseconds on a busy machine, so the calls a caller waits for are kept
// few: plain descriptors rather than FileHandle (whose readFile and close add
// round trips), closes nobody waits for, and an fstat that runs beside the
// fsync it does not depend on. Directory fsyncs shared between concurrent
// writers are the store's business (group-commit.ts), not this layer's.
export const nodeFileSystem: FileSystem = {
  readFileWithMtime: async (path) => {
    const before = OPEN_MAY_FOLLOW_LINKS ? regularFile(await fs.promises.lstat(path, { bigint: true }), path) : undefined;
    const fd = await descriptors.open(path, READ_NO_FOLLOW, undefined);
    try {
      // Checked before reading: a special file (a FIFO, a device) is never read.
      const stat = sameFile(regularFile(await descriptors.fstat(fd, { bigint: true }), path), before, path);
      return { text: await readAll(fd, Number(stat.size)), mtimeMs: msOf(stat.mtimeNs), identity: identityOf(stat) };
    } finally {
      closeLater(fd);
    }
  },
  writeNewFileSynced: async (path, data) => {
    const fd = await descriptors.open(path, "wx", 0o644);
    try {
      await writeAll(fd, Buffer.from(data, "utf8"));
      // fsync changes neither inode, mtime nor size: the identity can be read beside it.
      const [stat] = await Promise.all([descriptors.fstat(fd, { bigint: true }), descriptors.fsync(fd)]);
      return identityOf(stat);
    } finally {
      closeLater(fd);
    }
  },
  rename: (from, to) => fs.promises.rename(from, to),
  link: (from, to) => fs.promises.link(from, to),
  unlink: (path) => fs.promises.unlink(path),
  makeDirectory: async (path) => {
    await fs.promises.mkdir(path);
  },
  removeDirectory: (path) => fs.promises.rmdir(path),
  inspect: async (path) => {
    try {
      return pathInfoOf(await fs.promises.lstat(path, { bigint: true }));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return ABSENT_PATH;
      throw err;
    }
  },
  syncDirectory: async (path) => {
    const fd = await descriptors.open(path, "r", undefined);
    try {
      await descriptors.fsync(fd);
    } finally {
      closeLater(fd);
    }
  },
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
  watch(path, onEvent, onError) {
    const watcher = fs.watch(path, { persistent: false }, (_event, filename) => onEvent(filename ?? null));
    watcher.on("error", onError);
    return watcher;
  },
};

/** The callback API's descriptor calls as promises: one pool round trip each. */
const descriptors = {
  open: promisify(fs.open) as (path: string, flags: string | number, mode: number | undefined) => Promise<number>,
  fstat: promisify(fs.fstat) as (fd: number, options: { bigint: true }) => Promise<fs.BigIntStats>,
  fsync: promisify(fs.fsync),
  read: promisify(fs.read) as (fd: number, buffer: Buffer, offset: number, length: number, position: number | null) => Promise<{ bytesRead: number }>,
  write: promisify(fs.write) as (fd: number, buffer: Buffer, offset: number, length: number) => Promise<{ bytesWritten: number }>,
};

/** Closes without making anyone wait for it: the caller is done with the descriptor either way. */
function closeLater(fd: number): void {
  fs.close(fd, () => {});
}

/** Reads a regular file to its end: `expected` bytes (its size) in one call, unless it grew meanwhile. */
async function readAll(fd: number, expected: number): Promise<string> {
  const chunks: Buffer[] = [];
  for (let size = Math.max(expected + 1, 512); ; size = 64 * 1024) {
    const chunk = Buffer.allocUnsafe(size);
    const { bytesRead } = await descriptors.read(fd, chunk, 0, size, null);
    if (bytesRead === 0) break;
    chunks.push(chunk.subarray(0, bytesRead));
    // One byte more than the size was asked for: fewer came back, so that was the end.
    if (bytesRead < size) break;
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function writeAll(fd: number, data: Buffer): Promise<void> {
  for (let offset = 0; offset < data.length; ) {
    offset += (await descriptors.write(fd, data, offset, data.length - offset)).bytesWritten;
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
