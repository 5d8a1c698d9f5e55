import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import { Metadata, status } from "@grpc/grpc-js";
import { LockServiceClient, type AcquireResponse, type Lease } from "../gen/mcplockd/v1/lock.ts";
import { channelCredentials, tokenOptions } from "./channel.ts";
import { keepAliveDiagnostics, type KeepAliveDiagnostics } from "./diagnostics.ts";
import { InvalidArgumentError, LeaseLostError, LockClientError, UnavailableError } from "./errors.ts";
import { LeaseKeeper, type KeptLease } from "./lease-keeper.ts";
import { watchEvents } from "./lock-watch.ts";
import { Lock } from "./lock.ts";
import { durationToMs, msToDuration, timestampToDate, toFencingToken } from "./proto-time.ts";
import { MAX_WAIT_MS } from "../core/limits.ts";
import { errorFromStatus, isServiceError } from "./status-errors.ts";
import { AddressListError, DEFAULT_ADDRESS, parseAddressList } from "./address-list.ts";
import { ServiceEndpoints, type Endpoint } from "../grpc/service-endpoints.ts";
import type { AcquireOptions, ForceReleaseResult, LockClientOptions, LockEventInfo, LockInfo, Renewal, WatchOptions } from "./types.ts";

export { DEFAULT_ADDRESS };
/** Release and ListLocks answer at once; this only bounds an unresponsive peer. */
const UNARY_DEADLINE_MS = 10_000;

/**
 * A client of mcp-lockd's LockService. Locks it acquires are renewed
 * automatically over one shared KeepAlive stream until released or lost
 * (see Lock.signal and docs/client.md).
 */
export class LockClient implements AsyncDisposable {
  /** The address list as given (one HOST:PORT, or several separated by commas). */
  readonly address: string;
  /** The replicas, in the order they are tried. */
  readonly addresses: readonly string[];
  readonly #endpoints: ServiceEndpoints<LockServiceClient>;
  readonly #keeper: LeaseKeeper;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Open watches, ended by close(). */
  readonly #watches = new Set<AbortController>();

  constructor(options: LockClientOptions = {}) {
    // An empty MCP_LOCKD_ADDRESS counts as unset, as for the CLI.
    this.address = options.address ?? (process.env.MCP_LOCKD_ADDRESS || undefined) ?? DEFAULT_ADDRESS;
    try {
      this.addresses = parseAddressList(this.address);
    } catch (err) {
      if (err instanceof AddressListError) throw new InvalidArgumentError(`address: ${err.message}`, "address");
      throw err;
    }
    const initialDelayMs = options.reconnect?.initialDelayMs ?? 100;
    const maxDelayMs = Math.max(initialDelayMs, options.reconnect?.maxDelayMs ?? 2_000);
    const credentials = options.credentials ?? channelCredentials(options.tls);
    this.#endpoints = new ServiceEndpoints(
      this.addresses,
      (address) =>
        new LockServiceClient(address, credentials, {
          ...tokenOptions(options.token),
          // grpc-js backs off reconnecting too (1 s growing to 120 s by default),
          // and fails calls fast meanwhile: keep its pace no slower than ours.
          "grpc.initial_reconnect_backoff_ms": initialDelayMs,
          "grpc.max_reconnect_backoff_ms": maxDelayMs,
          // HTTP/2 pings while calls are open find a peer that vanished without
          // closing the connection (a host that went away), as the service does.
          "grpc.keepalive_time_ms": 30_000,
          "grpc.keepalive_timeout_ms": 10_000,
        }),
    );
    this.#keeper = new LeaseKeeper(this.#endpoints, { initialDelayMs, maxDelayMs });
  }

  /**
   * Acquires `resource`. Tries once unless `wait` is given; rejects with
   * ResourceBusyError when it is held (or the wait ran out), with
   * `signal.reason` when `signal` aborts (the wait is cancelled and the queue
   * left), InvalidArgumentError or UnavailableError.
   */
  async acquire(resource: string, options: AcquireOptions = {}): Promise<Lock> {
    this.#assertOpen();
    const { signal } = options;
    signal?.throwIfAborted();
    if (typeof resource !== "string") throw new InvalidArgumentError(`resource: must be a string; got ${typeof resource}`, "resource");
    const waitMs = waitOf(options.wait);
    const request = {
      resource,
      holder: options.holder ?? defaultHolder(),
      ttl: options.ttl === undefined ? undefined : msToDuration(positiveMs(options.ttl, "ttl")),
      waitTimeout: waitMs === 0 ? undefined : msToDuration(waitMs),
      metadata: options.metadata ?? {},
    };
    const startedAt = performance.now();
    let sentAt = startedAt;
    const response = await this.#call(resource, ({ stub }, attempt) => {
      if (signal?.aborted) return Promise.reject(signal.reason);
      if (attempt > 0 && waitMs > 0) {
        // Failing over: the wait goes on at the next replica for what is left of it.
        const leftMs = Math.max(0, waitMs - (performance.now() - startedAt));
        request.waitTimeout = leftMs === 0 ? undefined : msToDuration(leftMs);
      }
      sentAt = performance.now();
      return new Promise<AcquireResponse>((resolve, reject) => {
        const call = stub.acquire(request, new Metadata(), {}, (err, res) => {
          signal?.removeEventListener("abort", cancel);
          if (signal?.aborted) {
            // Granted as we gave up: nobody will use it.
            if (!err && res.lease) void this.release(res.lease.leaseId).catch(() => {});
            return reject(signal.reason);
          }
          if (err) return reject(err);
          resolve(res);
        });
        const cancel = () => call.cancel();
        signal?.addEventListener("abort", cancel, { once: true });
      });
    });
    const receivedAt = performance.now();
    const lease = response.lease;
    if (!lease) throw new LockClientError("the service answered Acquire without a lease", status.INTERNAL);
    const ttl = durationToMs(lease.ttl);
    // The lease was granted after the request was sent, so sent + ttl is
    // never later than the service's expiry. After a long wait that would
    // leave too little: count from receipt instead and renew at once, which
    // confirms it properly. Receipt can be late by more than the response's
    // transit (this process paused, a stalled network), so never count past
    // the service's own expiry either, by the wall clock the processes of one
    // host share, as the Python client does.
    const basis = receivedAt - sentAt <= (2 / 3) * ttl ? sentAt : receivedAt;
    const serverExpiresAt = lease.expiresAt === undefined ? Infinity : receivedAt + (timestampToDate(lease.expiresAt).getTime() - Date.now());
    const expiresAt = Math.min(basis + ttl, serverExpiresAt);
    if (expiresAt <= performance.now()) {
      void this.release(lease.leaseId).catch(() => {});
      throw new LeaseLostError(
        resource,
        "expired",
        `the grant of "${resource}" reached this process after its lease had ended (the process or the network was held up); nothing is held`,
      );
    }
    const expiresAtWall = Date.now() + (expiresAt - performance.now());
    let kept: KeptLease | undefined;
    const lock = new Lock(
      {
        resource: lease.resource,
        holder: lease.holder,
        fencingToken: toFencingToken(lease.fencingToken),
        leaseId: lease.leaseId,
        expiresAt: new Date(expiresAtWall),
        ttl,
      },
      { stopKeeping: (id) => this.#keeper.untrack(id), releaseLease: (id) => this.release(id) },
      (k) => (kept = k),
    );
    if (this.#closed) {
      // close() ran while the call was in flight: give it back if the channel still can.
      try {
        this.#endpoints.current().stub.release({ leaseId: lease.leaseId }, new Metadata(), { deadline: deadline() }, () => {});
      } catch {
        // The channel is shut already: the lease expires by its ttl.
      }
      throw closedError();
    }
    this.#keeper.track(lease.leaseId, kept!, { ttlMs: ttl, sentAt, expiresAt });
    return lock;
  }

  /**
   * Acquires, runs `fn`, and releases in all cases. `fn` gets the lock's
   * signal (fires on loss). Rejects with fn's error if it threw; with the
   * LeaseLostError if the lease was lost while fn ran, even if fn resolved
   * (its work was not done under the lock); else with the release's error.
   */
  async withLock<T>(
    resource: string,
    options: AcquireOptions,
    fn: (signal: AbortSignal, lock: Lock) => Promise<T>,
  ): Promise<T> {
    const lock = await this.acquire(resource, options);
    let result: T;
    try {
      result = await fn(lock.signal, lock);
    } catch (err) {
      await lock.release().catch(() => {});
      throw err;
    }
    await lock.release();
    lock.signal.throwIfAborted();
    return result;
  }

  /** Held resources, sorted by name, optionally only those starting with `resourcePrefix`. */
  async list(resourcePrefix = ""): Promise<LockInfo[]> {
    this.#assertOpen();
    const response = await this.#call(undefined, ({ stub }) =>
      new Promise<{ locks: Lease[] }>((resolve, reject) =>
        stub.listLocks({ resourcePrefix }, new Metadata(), { deadline: deadline() }, (err, res) => (err ? reject(err) : resolve(res))),
      ),
    );
    return response.locks.map(toLockInfo);
  }

  /**
   * Operators: frees `resource` whoever holds it (needs the "admin" action
   * when the service has --auth-file). The holder's next renewal finds its
   * lease expired; the next waiter is granted with a higher fencing token.
   */
  async forceRelease(resource: string, reason: string): Promise<ForceReleaseResult> {
    this.#assertOpen();
    // Not sent again to another replica: had the first one freed it before
    // its answer was lost, a second force could free the next holder.
    const response = await this.#call(
      resource,
      ({ stub }) =>
        new Promise<{ released: boolean; fencingToken: number }>((resolve, reject) =>
          stub.forceRelease({ resource, reason }, new Metadata(), { deadline: deadline() }, (err, res) => (err ? reject(err) : resolve(res))),
        ),
      false,
    );
    return { released: response.released, fencingToken: toFencingToken(response.fencingToken) };
  }

  /**
   * What happens to the resources starting with `resourcePrefix`: first one
   * "HELD" event per held resource and "SNAPSHOT_COMPLETE", then every
   * change as it happens (ACQUIRED, RELEASED, EXPIRED, HANDED_OVER,
   * WAITERS_CHANGED, RENEWED...). Break out of the loop, or abort
   * `options.signal`, to stop. Throws UnavailableError when the service
   * goes away and WatcherTooSlowError when this reader fell too far behind;
   * a new watch then starts again from a fresh snapshot.
   */
  async *watch(resourcePrefix = "", options: WatchOptions = {}): AsyncGenerator<LockEventInfo> {
    this.#assertOpen();
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    if (options.signal?.aborted) controller.abort();
    this.#watches.add(controller);
    const endpoint = this.#endpoints.current();
    try {
      yield* watchEvents(endpoint.stub, resourcePrefix, { signal: controller.signal });
    } catch (err) {
      // The next watch goes to another replica.
      if (err instanceof UnavailableError) this.#endpoints.failed(endpoint);
      throw err;
    } finally {
      this.#watches.delete(controller);
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Releases a lease by id (for scripts that keep one): true when it was
   * live, false when the service no longer knows it (expired, released).
   * A Lock of this client with that id stops being renewed.
   */
  async release(leaseId: string): Promise<boolean> {
    this.#keeper.untrack(leaseId);
    this.#assertOpen();
    try {
      const response = await this.#call(undefined, (endpoint) => releaseVia(endpoint, leaseId));
      return response.released;
    } catch (err) {
      if (err instanceof LockClientError && err.code === status.NOT_FOUND) return false;
      throw err;
    }
  }

  /**
   * Renews a lease by id once, over the shared KeepAlive stream. Resolves to
   * the new expiry (this machine's clock, counted from when the request was
   * sent); rejects with LeaseLostError when the lease is gone.
   */
  renew(leaseId: string): Promise<Renewal> {
    this.#assertOpen();
    return this.#keeper.renewOnce(leaseId);
  }

  /**
   * Closes the client at once: leases it holds stop being renewed and their
   * signals fire (LeaseLostError, reason "closed"); they are released on a
   * best-effort basis. Use `await using client` / [Symbol.asyncDispose] to
   * wait for those releases.
   */
  close(): void {
    void this.#shutdown();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#shutdown();
  }

  /** @internal Counters and events of the KeepAlive stream, for tests and measurements. */
  get [keepAliveDiagnostics](): KeepAliveDiagnostics {
    return this.#keeper.diagnostics;
  }

  #shutdown(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    for (const watch of this.#watches) watch.abort();
    const held = this.#keeper.close();
    const releases = held.map((leaseId) => this.#endpoints.withFailover((endpoint) => releaseVia(endpoint, leaseId)).catch(() => {}));
    this.#closing = Promise.all(releases).then(() => this.#endpoints.close());
    return this.#closing;
  }

  /**
   * Runs a call on the current replica, failing over to the next ones while
   * it gets UNAVAILABLE (unless `failOver` is false: then only the next call
   * goes elsewhere); gRPC errors become the client's typed errors.
   */
  async #call<T>(
    resource: string | undefined,
    call: (endpoint: Endpoint<LockServiceClient>, attempt: number) => Promise<T>,
    failOver = true,
  ): Promise<T> {
    try {
      return await this.#endpoints.withFailover(call, () => failOver);
    } catch (err) {
      if (!isServiceError(err)) throw err;
      const error = errorFromStatus(err, resource);
      if (error instanceof UnavailableError && failOver && this.addresses.length > 1) {
        throw new UnavailableError(`${error.message} (tried ${this.addresses.join(", ")})`, { cause: err });
      }
      throw error;
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw closedError();
  }
}

function releaseVia({ stub }: Endpoint<LockServiceClient>, leaseId: string): Promise<{ released: boolean }> {
  return new Promise((resolve, reject) =>
    stub.release({ leaseId }, new Metadata(), { deadline: deadline() }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

function closedError(): LockClientError {
  return new LockClientError("the LockClient is closed", status.CANCELLED);
}

function defaultHolder(): string {
  return `${hostname()}:${process.pid}`;
}

function deadline(): number {
  return Date.now() + UNARY_DEADLINE_MS;
}

function positiveMs(value: number, field: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(`${field}: must be a finite, non-negative number of milliseconds; got ${String(value)}`, field);
  }
  return value;
}

function waitOf(wait: number | undefined): number {
  if (wait === undefined) return 0;
  if (wait === Infinity) return MAX_WAIT_MS;
  return positiveMs(wait, "wait");
}

function toLockInfo(lease: Lease): LockInfo {
  return {
    resource: lease.resource,
    holder: lease.holder,
    fencingToken: toFencingToken(lease.fencingToken),
    acquiredAt: timestampToDate(lease.acquiredAt),
    expiresAt: timestampToDate(lease.expiresAt),
    ttl: durationToMs(lease.ttl),
    waiters: lease.waiters,
    state: lease.state,
    metadata: { ...lease.metadata },
  };
}
