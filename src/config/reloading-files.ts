import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";

/** Events come in bursts (an editor's write, a rename over the file): read once they settle. */
const SETTLE_MS = 100;

export interface ReloadingFilesOptions<T> {
  /** Named in log lines: "TLS certificates", "auth file". */
  what: string;
  /** Builds the value from the files' contents, in the order of `paths`; throws when they are not usable. */
  parse: (contents: Buffer[]) => T;
  /** Called with each new good value after a reload. */
  onChange?: (value: T) => void;
  log?: (message: string) => void;
}

/**
 * A value built from files that is rebuilt when any of them changes on disk
 * or reload() is called (on SIGHUP). A bad new version (half written, wrong
 * key, invalid JSON) keeps the last good value and logs why, so a broken
 * edit never takes the service down or opens it up. The directories are
 * watched, not the files, so a file replaced by rename (how certificates
 * are rotated) is seen.
 */
export class ReloadingFiles<T> {
  #value: T;
  readonly #paths: string[];
  readonly #options: ReloadingFilesOptions<T>;
  readonly #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;
  #reloading: Promise<void> = Promise.resolve();

  private constructor(paths: string[], value: T, options: ReloadingFilesOptions<T>) {
    this.#paths = paths;
    this.#value = value;
    this.#options = options;
  }

  /** Reads and parses the files once (throwing if that fails: a bad start is an error), then watches them. */
  static async open<T>(paths: string[], options: ReloadingFilesOptions<T>): Promise<ReloadingFiles<T>> {
    const absolute = paths.map((path) => resolve(path));
    const files = new ReloadingFiles(absolute, options.parse(await readAll(absolute)), options);
    files.#watch();
    return files;
  }

  get value(): T {
    return this.#value;
  }

  /** Re-reads now; resolves once done (successful or not: failures are logged). */
  reload(): Promise<void> {
    this.#reloading = this.#reloading.then(async () => {
      try {
        const value = this.#options.parse(await readAll(this.#paths));
        this.#value = value;
        this.#options.onChange?.(value);
        this.#options.log?.(`${this.#options.what} reloaded`);
      } catch (err) {
        this.#options.log?.(`${this.#options.what} not reloaded, keeping the previous version: ${(err as Error).message}`);
      }
    });
    return this.#reloading;
  }

  close(): void {
    clearTimeout(this.#timer);
    for (const watcher of this.#watchers) watcher.close();
  }

  #watch(): void {
    const names = new Map<string, Set<string>>();
    for (const path of this.#paths) {
      const dir = dirname(path);
      if (!names.has(dir)) names.set(dir, new Set());
      names.get(dir)!.add(basename(path));
    }
    for (const [dir, files] of names) {
      try {
        const watcher = watch(dir, { persistent: false }, (_event, filename) => {
          if (filename === null || files.has(filename.toString())) this.#scheduleReload();
        });
        watcher.on("error", (err) => this.#options.log?.(`cannot watch ${dir} for ${this.#options.what}: ${err.message}; SIGHUP still reloads`));
        this.#watchers.push(watcher);
      } catch (err) {
        this.#options.log?.(`cannot watch ${dir} for ${this.#options.what}: ${(err as Error).message}; SIGHUP still reloads`);
      }
    }
  }

  #scheduleReload(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.reload(), SETTLE_MS);
    this.#timer.unref();
  }
}

async function readAll(paths: string[]): Promise<Buffer[]> {
  return Promise.all(
    paths.map((path) =>
      readFile(path).catch((err: NodeJS.ErrnoException) => {
        throw new Error(`cannot read ${path}: ${err.code ?? err.message}`);
      }),
    ),
  );
}
