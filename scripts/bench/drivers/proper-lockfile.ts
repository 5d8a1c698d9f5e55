import { join } from "node:path";
import lockfile from "proper-lockfile";
import { NotApplicableError, type Listing, type LockClient, type LockDriver, type Release, type RenewalStream } from "./driver.ts";

/**
 * How a proper-lockfile waiter polls: it has no queue and no notification,
 * only retries. It sleeps 10, 15, 22, 34, then 50 ms between attempts (then
 * starts over, `forever`): a common choice that keeps waiters from
 * spinning; a shorter backoff hands off sooner and burns more CPU. (A large
 * `retries` count instead of `forever` would make the `retry` package
 * precompute that many timeouts on every lock() call.)
 */
export const WAIT_RETRIES = { retries: 10, forever: true, minTimeout: 10, maxTimeout: 50, factor: 1.5 };

/**
 * proper-lockfile 4.1 as a library: lock files (mkdir'd directories) in a
 * temp dir, defaults for stale (10 s) and update (5 s). `realpath: false`
 * because the locked paths need not exist.
 */
export class ProperLockfileDriver implements LockDriver {
  constructor(private readonly lockDir: string) {}

  async openClient(): Promise<LockClient> {
    return new ProperLockfileClient(this.lockDir);
  }
}

class ProperLockfileClient implements LockClient {
  private compromised: Error | undefined;

  constructor(private readonly lockDir: string) {}

  private async lock(resource: string, wait: boolean): Promise<Release> {
    if (this.compromised) throw this.compromised;
    return lockfile.lock(join(this.lockDir, resource), {
      realpath: false,
      retries: wait ? WAIT_RETRIES : 0,
      // The default throws from a timer, killing the process.
      onCompromised: (err) => (this.compromised = err),
    });
  }

  async acquireRelease(resource: string): Promise<void> {
    const release = await this.lock(resource, false);
    await release();
  }

  acquireWaiting(resource: string): Promise<Release> {
    return this.lock(resource, true);
  }

  /** No lease to create: the lifecycle is the plain cycle. */
  lifecycle(resource: string): Promise<void> {
    return this.acquireRelease(resource);
  }

  hold(): Promise<string> {
    throw new NotApplicableError("proper-lockfile has no leases to renew");
  }

  openRenewalStream(): RenewalStream {
    throw new NotApplicableError("proper-lockfile has no renewal stream");
  }

  list(): Promise<Listing> {
    throw new NotApplicableError("proper-lockfile has no listing");
  }

  async close(): Promise<void> {}
}
