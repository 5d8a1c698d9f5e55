/** One directory's fsyncs: the one running, and the one that starts when it ends. */
interface DirectorySyncs {
  running: Promise<void>;
  /** Shared by everyone who asked while `running` ran. */
  next?: Promise<void>;
}

/**
 * Group commit for directory fsyncs. A rename, link or unlink in a directory
 * is durable once an fsync of that directory that *started after* it has
 * finished. So while one fsync runs, every caller who asks meanwhile (its
 * change may have come after the running fsync began) waits for the single
 * next one, which starts when the running one ends and serves them all:
 * concurrent grants and horizon rewrites on different resources pay one
 * directory fsync per batch instead of one each, and nobody is answered
 * before an fsync that covers their change has finished.
 */
export class GroupCommit {
  private readonly dirs = new Map<string, DirectorySyncs>();

  constructor(private readonly syncDirectory: (path: string) => Promise<void>) {}

  /** Resolves once an fsync of `path` that started after this call has finished; rejects with its error. */
  sync(path: string): Promise<void> {
    const current = this.dirs.get(path);
    if (current === undefined) return this.start(path);
    const startNext = () => this.start(path);
    current.next ??= current.running.then(startNext, startNext);
    return current.next;
  }

  private start(path: string): Promise<void> {
    const entry: DirectorySyncs = { running: this.syncDirectory(path) };
    this.dirs.set(path, entry);
    const forget = () => {
      if (this.dirs.get(path) === entry && entry.next === undefined) this.dirs.delete(path);
    };
    entry.running.then(forget, forget);
    return entry.running;
  }
}
