import { ServiceStartingError } from "../core/errors.ts";

/**
 * Closed while the service starts: the gRPC server already answers health
 * (NOT_SERVING) and reflection, but the lock manager has not loaded the lease
 * files yet, so a lock call could grant a resource that a lease file on disk
 * still holds. LockService calls are refused with UNAVAILABLE until open():
 * clients retry UNAVAILABLE, and it is what they get from a stopped service.
 */
export class ReadinessGate {
  private ready = false;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly what = "loading lease files") {}

  get isReady(): boolean {
    return this.ready;
  }

  /** Opens the gate for good and tells the listeners. */
  open(): void {
    if (this.ready) return;
    this.ready = true;
    for (const listener of [...this.listeners]) listener();
    this.listeners.clear();
  }

  /** Calls `listener` once, when the gate opens. Returns a function that unsubscribes. */
  onOpen(listener: () => void): () => void {
    if (this.ready) {
      listener();
      return () => {};
    }
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The error a call gets while the gate is closed; undefined once open. */
  refusal(): ServiceStartingError | undefined {
    return this.ready ? undefined : new ServiceStartingError(this.what);
  }
}
