import { nodeFileSystem, overwriteDurably, type FileSystem } from "../../src/store/file-system.ts";

/**
 * The real file system with injectable faults and gates, for unit tests of
 * LeaseFileStore and LockManager (EACCES, ENOSPC, EIO without root tricks).
 */

export type FileSystemMethod = keyof FileSystem;
/** The methods that return a promise (all but `watch`); only these can be gated. */
export type AsyncFileSystemMethod = Exclude<FileSystemMethod, "watch">;

export interface FaultOptions {
  /**
   * Only calls whose path passes this test are affected (for `rename`, the
   * target path: "the rename onto R.lock"). Default: every call.
   */
  match?: (path: string) => boolean;
  /** Matching calls to let through before failing. Default 0. */
  skip?: number;
  /**
   * Run the real operation first, then fail (a write that created its file,
   * then hit ENOSPC). Not supported for `watch`.
   */
  after?: boolean;
}

interface Fault extends FaultOptions {
  code: string;
  skip: number;
}

interface Gate {
  match: (path: string) => boolean;
  /** Hold the call after it ran, before its result is returned. */
  after: boolean;
  reached: () => void;
  opened: Promise<void>;
}

/** An Error shaped like one from node:fs: `code`, `syscall` and `path` set. */
export function errnoError(code: string, method: string, path: string): NodeJS.ErrnoException {
  const err = new Error(`${code}: injected fault, ${method} '${path}'`) as NodeJS.ErrnoException;
  err.code = code;
  err.syscall = method;
  err.path = path;
  return err;
}

export class FaultyFileSystem implements FileSystem {
  private readonly faults = new Map<FileSystemMethod, Fault>();
  private readonly gates = new Map<AsyncFileSystemMethod, Gate>();
  /** Number of injected failures so far. */
  injected = 0;
  /**
   * Runs inside overwriteSynced right after its durable write, before its
   * last check: what another process does in that window.
   */
  overwriteHook: (() => void) | undefined;

  /**
   * Makes matching calls of `method` fail with `code` until `heal()` (one fault
   * per method; a new one replaces the old). A `watch` fault fails once only.
   */
  fail(method: FileSystemMethod, code: string, options: FaultOptions = {}): void {
    if (method === "watch" && options.after) throw new Error("FaultyFileSystem: `after` is not supported for watch");
    this.faults.set(method, { ...options, code, skip: options.skip ?? 0 });
  }

  /** Removes all faults (gates stay). */
  heal(): void {
    this.faults.clear();
  }

  /**
   * Holds the next matching call before it runs (with `after`: once it has
   * run, before its result is returned) until `open()` is called. `reached`
   * resolves when that call arrives (has run). The gate then goes away.
   */
  gate(method: AsyncFileSystemMethod, match: (path: string) => boolean, { after = false } = {}): { reached: Promise<void>; open(): void } {
    let reached!: () => void;
    let open!: () => void;
    const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
    const opened = new Promise<void>((resolve) => (open = resolve));
    this.gates.set(method, { match, after, reached, opened });
    return { reached: reachedPromise, open };
  }

  /** The fault to inject for this call, if any (counts down `skip`). */
  private take(method: FileSystemMethod, path: string): Fault | undefined {
    const fault = this.faults.get(method);
    if (!fault || (fault.match && !fault.match(path))) return undefined;
    if (fault.skip > 0) {
      fault.skip--;
      return undefined;
    }
    return fault;
  }

  private async run<T>(method: AsyncFileSystemMethod, path: string, real: () => Promise<T>): Promise<T> {
    const gate = this.gates.get(method);
    if (gate && gate.match(path)) {
      this.gates.delete(method);
      if (gate.after) {
        const result = await real();
        gate.reached();
        await gate.opened;
        return result;
      }
      gate.reached();
      await gate.opened;
    }
    const fault = this.take(method, path);
    if (!fault) return real();
    if (fault.after) await real();
    this.injected++;
    throw errnoError(fault.code, method, path);
  }

  readFileWithMtime(path: string) {
    return this.run("readFileWithMtime", path, () => nodeFileSystem.readFileWithMtime(path));
  }
  writeNewFileSynced(path: string, data: string) {
    return this.run("writeNewFileSynced", path, () => nodeFileSystem.writeNewFileSynced(path, data));
  }
  overwriteSynced(path: string, identity: string, data: string, writing: () => void) {
    return this.run("overwriteSynced", path, () => overwriteDurably(path, identity, data, writing, () => this.overwriteHook?.()));
  }
  rename(from: string, to: string) {
    // Matched against the target: "the rename onto R.lock".
    return this.run("rename", to, () => nodeFileSystem.rename(from, to));
  }
  link(from: string, to: string) {
    // Matched against the target, like rename.
    return this.run("link", to, () => nodeFileSystem.link(from, to));
  }
  unlink(path: string) {
    return this.run("unlink", path, () => nodeFileSystem.unlink(path));
  }
  makeDirectory(path: string) {
    return this.run("makeDirectory", path, () => nodeFileSystem.makeDirectory(path));
  }
  removeDirectory(path: string) {
    return this.run("removeDirectory", path, () => nodeFileSystem.removeDirectory(path));
  }
  inspect(path: string) {
    return this.run("inspect", path, () => nodeFileSystem.inspect(path));
  }
  syncDirectory(path: string) {
    return this.run("syncDirectory", path, () => nodeFileSystem.syncDirectory(path));
  }
  mkdir(path: string) {
    return this.run("mkdir", path, () => nodeFileSystem.mkdir(path));
  }
  readdir(path: string) {
    return this.run("readdir", path, () => nodeFileSystem.readdir(path));
  }
  identity(path: string) {
    return this.run("identity", path, () => nodeFileSystem.identity(path));
  }
  watch(path: string, onEvent: (filename: string | null) => void, onError: (err: Error) => void) {
    const fault = this.take("watch", path);
    if (fault) {
      this.faults.delete("watch"); // fails once
      this.injected++;
      throw errnoError(fault.code, "watch", path);
    }
    return nodeFileSystem.watch(path, onEvent, onError);
  }
}
