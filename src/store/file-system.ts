import * as fsp from "node:fs/promises";
import { watch as fsWatch, type FSWatcher } from "node:fs";

/**
 * The file operations LeaseFileStore uses, injectable so tests can make any of
 * them fail (EACCES, ENOSPC, EIO) without root tricks.
 */
export interface FileSystem {
  /** Contents and modification time (ms) of a file, read through one handle. */
  readFileWithMtime(path: string): Promise<{ text: string; mtimeMs: number }>;
  /** Creates `path` exclusively, writes `data`, fsyncs and closes it. */
  writeNewFileSynced(path: string, data: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** fsync of a directory, so a rename or unlink in it survives a crash. */
  syncDirectory(path: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  watch(path: string, onEvent: (filename: string | null) => void, onError: (err: Error) => void): FSWatcher;
}

export const nodeFileSystem: FileSystem = {
  async readFileWithMtime(path) {
    const handle = await fsp.open(path, "r");
    try {
      const stat = await handle.stat();
      const text = await handle.readFile("utf8");
      return { text, mtimeMs: stat.mtimeMs };
    } finally {
      await handle.close();
    }
  },
  async writeNewFileSynced(path, data) {
    const handle = await fsp.open(path, "wx", 0o644);
    try {
      await handle.writeFile(data, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  rename: (from, to) => fsp.rename(from, to),
  unlink: (path) => fsp.unlink(path),
  async syncDirectory(path) {
    const handle = await fsp.open(path, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  async mkdir(path) {
    await fsp.mkdir(path, { recursive: true });
  },
  readdir: (path) => fsp.readdir(path),
  watch(path, onEvent, onError) {
    const watcher = fsWatch(path, { persistent: false }, (_event, filename) => onEvent(filename ?? null));
    watcher.on("error", onError);
    return watcher;
  },
};
