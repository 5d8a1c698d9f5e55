/**
 * Background horizon rewrites in flight at once: enough to keep the thread
 * pool's fdatasyncs overlapping, few enough that grants and releases are not
 * starved of the disk.
 */
const MAX_IN_FLIGHT = 16;

/**
 * The lease-file store's queue of horizon rewrites (docs/protocol.md, "The
 * renewal horizon"): at most one per resource, at most MAX_IN_FLIGHT at a
 * time, oldest request first, since a burst of them (leases renewed many
 * times a second fall due together) must not flood the disk. A rewrite has
 * half the headroom of slack before any renewal needs it; a failure only
 * means a later renewal writes the file itself (and reports its own error).
 */
export class HorizonRewrites {
  /** Resources due (→ lease id hash), in request order. */
  private readonly due = new Map<string, string>();
  private readonly running = new Set<string>();
  private readonly idleWaiters: Array<() => void> = [];
  private closed = false;

  constructor(
    private readonly rewrite: (resource: string, leaseIdHash: string) => Promise<void>,
    private readonly warn: (message: string) => void,
  ) {}

  schedule(resource: string, leaseIdHash: string): void {
    if (this.closed || this.due.has(resource)) return;
    this.due.set(resource, leaseIdHash);
    this.startSome();
  }

  /** No new rewrites start; those running finish. */
  close(): void {
    this.closed = true;
    this.due.clear();
    this.notifyIfIdle();
  }

  /** Resolves once nothing is due or running (for tests and shutdown). */
  idle(): Promise<void> {
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      this.notifyIfIdle();
    });
  }

  private startSome(): void {
    for (const [resource, leaseIdHash] of this.due) {
      if (this.running.size >= MAX_IN_FLIGHT || this.closed) return;
      if (this.running.has(resource)) continue;
      this.running.add(resource);
      void this.rewrite(resource, leaseIdHash)
        .catch((err: Error) => this.warn(`pushing out the horizon of "${resource}" failed: ${err.message}`))
        .finally(() => {
          this.running.delete(resource);
          this.due.delete(resource);
          this.startSome();
          this.notifyIfIdle();
        });
    }
  }

  private notifyIfIdle(): void {
    if (this.running.size > 0 || (this.due.size > 0 && !this.closed)) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
