import type { LeaseRecord } from "./lease.ts";

/** One pending Acquire. Settles exactly once; after that it is "gone". */
export class Waiter {
  private settledFlag = false;
  private grantedFlag = false;
  /** It has joined a shared queue (a store's, across replicas), so it has a place to leave. */
  joined = false;
  private readonly cleanups: Array<() => void> = [];
  readonly promise: Promise<LeaseRecord>;
  private resolvePromise!: (lease: LeaseRecord) => void;
  private rejectPromise!: (err: Error) => void;

  constructor(
    readonly leaseIdHash: string,
    readonly holder: string,
    readonly ttlMs: number,
    readonly metadata: Record<string, string>,
    /** True for a try-once Acquire: it is never left waiting. */
    readonly tryOnce: boolean,
  ) {
    this.promise = new Promise((resolve, reject) => {
      this.resolvePromise = resolve;
      this.rejectPromise = reject;
    });
  }

  get settled(): boolean {
    return this.settledFlag;
  }

  /** It was handed the lease (as against failing or leaving). */
  get granted(): boolean {
    return this.grantedFlag;
  }

  onSettle(cleanup: () => void): void {
    this.cleanups.push(cleanup);
  }

  /** Hands over the lease; false if the waiter has already gone. */
  grant(lease: LeaseRecord): boolean {
    if (this.settledFlag) return false;
    this.grantedFlag = true;
    if (!this.settle()) return false;
    this.resolvePromise(lease);
    return true;
  }

  fail(err: Error): boolean {
    if (!this.settle()) return false;
    this.rejectPromise(err);
    return true;
  }

  private settle(): boolean {
    if (this.settledFlag) return false;
    this.settledFlag = true;
    for (const cleanup of this.cleanups.splice(0)) cleanup();
    return true;
  }
}
