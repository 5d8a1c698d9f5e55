import { performance } from "node:perf_hooks";
import { status, type ClientDuplexStream, type StatusObject } from "@grpc/grpc-js";
import type { KeepAliveRequest, KeepAliveResponse, LockServiceClient } from "../gen/mcplockd/v1/lock.ts";
import { Backoff } from "./backoff.ts";
import type { Endpoint, ServiceEndpoints } from "../grpc/service-endpoints.ts";
import { KeepAliveDiagnostics } from "./diagnostics.ts";
import { LeaseLostError, LockClientError, UnavailableError, type LeaseLossReason } from "./errors.ts";
import { durationToMs } from "./proto-time.ts";
import { errorFromRenewal } from "./status-errors.ts";
import type { Renewal } from "./types.ts";

/** What the keeper tells the owner of a lease (a Lock). */
export interface KeptLease {
  readonly resource: string;
  /** A renewal was confirmed: live until `expiresAt` on this machine's clock. */
  confirmed(expiresAt: Date, ttlMs: number): void;
  lost(error: LeaseLostError): void;
}

export interface TrackOptions {
  ttlMs: number;
  /** performance.now() when the request that set the current expiry was sent; renewal is due a third of the ttl later. */
  sentAt: number;
  /** performance.now() value of the confirmed expiry. */
  expiresAt: number;
}

interface Entry {
  leaseId: string;
  lease: KeptLease;
  ttlMs: number;
  /** Last confirmed expiry, performance.now() scale. */
  expiresAt: number;
  renewTimer?: NodeJS.Timeout;
  lossTimer?: NodeJS.Timeout;
  /** Why the last renewal failed, while no later one succeeded: told when the lease is lost. */
  lastFailure?: string;
}

type Outcome = { expired: true } | { expired: false; renewal: Renewal } | Error;

interface InFlight {
  sentAt: number;
  sentAtWall: number;
  /** Set for renew() calls; the tracked lease (if any) is updated either way. */
  settle?: (outcome: Outcome) => void;
  /** With several replicas: fires when the answer is overdue (see answerTimeoutMs). */
  overdue?: NodeJS.Timeout;
}

interface Stream {
  endpoint: Endpoint<LockServiceClient>;
  call: ClientDuplexStream<KeepAliveRequest, KeepAliveResponse>;
  /** Unanswered requests per lease id, oldest first: the service answers each request once, in order. */
  inFlight: Map<string, InFlight[]>;
  answered: boolean;
}

/**
 * How long before the confirmed expiry the loss timer is set, so that a late
 * timer still signals the loss in time: 5 % of the ttl, at most 100 ms. On
 * the 2-vCPU test VM under load, timers fired up to ~50 ms late.
 */
export function lossGuardMs(ttlMs: number): number {
  return Math.min(100, ttlMs / 20);
}

const RENEW_TIMEOUT_MS = 10_000;

/** After a renewal the service could not do (an in-band error), the next try comes this share of the ttl later instead of a third. */
const RETRY_AFTER_FAILED_RENEWAL = 1 / 10;

/**
 * With several replicas, how long a renewal may stay unanswered before the
 * stream counts as broken and the keeper moves to the next replica: a
 * replica that froze or whose host vanished ends no stream. A sixth of the
 * ttl (at least 1 s, at most 10 s), so the renewal sent at ttl/3 is retried
 * elsewhere well before the lease's expiry. The Python client uses the same.
 */
export function answerTimeoutMs(ttlMs: number): number {
  return Math.min(Math.max(ttlMs / 6, 1_000), 10_000);
}

/**
 * Keeps a client's leases alive over ONE KeepAlive stream: each lease is
 * renewed a third of its ttl after its last renewal was sent; a renewal
 * confirms the lease until (local time the request was sent) + (ttl the
 * service answered), which is never later than the service's own expiry
 * whatever the clocks say. A lease is lost when a renewal answers `expired`,
 * or when its confirmed expiry passes with no newer confirmation. A renewal
 * answered with an error (the service could not read or write that lease's
 * file) is a failed try of that lease only, not a loss: the lease is still
 * held until its confirmed expiry, which may be a whole ttl away, and the
 * failure may pass (permissions fixed, space freed); so it is retried sooner
 * than usual, and the lease is lost only if its confirmed expiry passes first.
 *
 * The stream opens with the first lease and closes with the last: while a
 * lease is held the stream (or a pending reconnection) keeps the process
 * alive, and nothing does afterwards (beyond the second a service that does
 * not answer gets to end the half-closed stream). When it breaks, it is reopened after an
 * exponential backoff with jitter and every live lease is renewed at once.
 * With one address, a renewal that is never answered needs no timeout of its
 * own: the lease's loss timer fires at its confirmed expiry regardless.
 *
 * With several addresses (replicas of one service), a stream that breaks, or
 * leaves a renewal unanswered for answerTimeoutMs, counts as its replica's
 * failure: the keeper opens a stream to the next address at once and renews
 * every lease there with the same lease ids (any replica serves any lease);
 * backoff applies only once every address has failed in a row.
 */
export class LeaseKeeper {
  readonly diagnostics = new KeepAliveDiagnostics();
  private readonly entries = new Map<string, Entry>();
  private readonly backoff: Backoff;
  private stream: Stream | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private pendingRenewCalls = 0;
  /** Streams that failed since one was last answered: below the number of addresses, the next is tried at once. */
  private failuresInRow = 0;
  private closed = false;

  constructor(
    private readonly endpoints: ServiceEndpoints<LockServiceClient>,
    reconnect: { initialDelayMs: number; maxDelayMs: number },
  ) {
    this.backoff = new Backoff(reconnect.initialDelayMs, reconnect.maxDelayMs);
  }

  track(leaseId: string, lease: KeptLease, options: TrackOptions): void {
    if (this.closed) throw new LockClientError("the LockClient is closed", status.CANCELLED);
    const entry: Entry = { leaseId, lease, ttlMs: options.ttlMs, expiresAt: options.expiresAt };
    this.entries.set(leaseId, entry);
    this.diagnostics.stats.leases = this.entries.size;
    this.armLossTimer(entry);
    this.armRenewTimer(entry, options.sentAt + options.ttlMs / 3 - performance.now());
    if (!this.stream && !this.reconnectTimer) this.openStream(false);
  }

  /** Stops keeping the lease alive (released, or lost). Closes the stream after the last one. */
  untrack(leaseId: string): void {
    const entry = this.entries.get(leaseId);
    if (!entry) return;
    clearTimeout(entry.renewTimer);
    clearTimeout(entry.lossTimer);
    this.entries.delete(leaseId);
    this.diagnostics.stats.leases = this.entries.size;
    this.closeIfIdle();
  }

  /** One renewal of any lease id over the shared stream. */
  renewOnce(leaseId: string): Promise<Renewal> {
    if (this.closed) return Promise.reject(new LockClientError("the LockClient is closed", status.CANCELLED));
    this.pendingRenewCalls += 1;
    if (!this.stream) this.reconnectNow();
    const stream = this.stream!;
    return new Promise<Renewal>((resolve, reject) => {
      let done = false;
      const settle = (outcome: Outcome) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.pendingRenewCalls -= 1;
        this.closeIfIdle();
        if (outcome instanceof Error) reject(outcome);
        else if (outcome.expired) reject(new LeaseLostError(undefined, "expired", "the lease has expired, was released, or is unknown"));
        else resolve(outcome.renewal);
      };
      const timer = setTimeout(
        () => settle(new UnavailableError(`no answer to the renewal within ${RENEW_TIMEOUT_MS} ms`)),
        RENEW_TIMEOUT_MS,
      );
      this.send(stream, leaseId, settle);
    });
  }

  /** Gives up every lease (their signals fire with reason "closed"), closes the stream, and returns their ids. */
  close(): string[] {
    if (this.closed) return [];
    const held = [...this.entries.keys()];
    for (const entry of [...this.entries.values()]) {
      this.lose(entry, "closed", `the lease on "${entry.lease.resource}" was given up: the LockClient was closed`);
    }
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const stream = this.stream;
    this.dropStream(new LockClientError("the LockClient was closed", status.CANCELLED));
    stream?.call.cancel();
    return held;
  }

  private openStream(reconnect: boolean): void {
    const endpoint = this.endpoints.current();
    const call = endpoint.stub.keepAlive();
    const stream: Stream = { endpoint, call, inFlight: new Map(), answered: false };
    this.stream = stream;
    const { stats } = this.diagnostics;
    stats.streamsOpened += 1;
    stats.streamOpen = true;
    this.diagnostics.emit("stream-opened", { at: performance.now(), reconnect, address: endpoint.address });
    call.on("data", (response: KeepAliveResponse) => this.onResponse(stream, response));
    // Every end, error or not, also arrives as "status"; handled there.
    call.on("error", () => {});
    call.on("status", (end: StatusObject) => this.onStreamEnd(stream, end));
  }

  private send(stream: Stream, leaseId: string, settle?: (outcome: Outcome) => void): void {
    const request: InFlight = { sentAt: performance.now(), sentAtWall: Date.now(), settle };
    if (this.endpoints.size > 1) {
      const ttlMs = this.entries.get(leaseId)?.ttlMs ?? RENEW_TIMEOUT_MS;
      const timeoutMs = answerTimeoutMs(ttlMs);
      request.overdue = setTimeout(() => this.onOverdue(stream, timeoutMs), timeoutMs);
      request.overdue.unref();
    }
    const queue = stream.inFlight.get(leaseId);
    if (queue) queue.push(request);
    else stream.inFlight.set(leaseId, [request]);
    this.diagnostics.stats.renewalsSent += 1;
    stream.call.write({ leaseId });
  }

  private renew(entry: Entry): void {
    // No stream: a reconnection is scheduled, and it renews every lease.
    if (!this.stream) return;
    this.send(this.stream, entry.leaseId);
    this.armRenewTimer(entry, entry.ttlMs / 3);
  }

  private onResponse(stream: Stream, response: KeepAliveResponse): void {
    if (stream !== this.stream) return;
    if (!stream.answered) {
      stream.answered = true;
      this.failuresInRow = 0;
      this.backoff.reset();
    }
    const queue = stream.inFlight.get(response.leaseId);
    const request = queue?.shift();
    if (queue?.length === 0) stream.inFlight.delete(response.leaseId);
    if (!request) return;
    clearTimeout(request.overdue);
    const entry = this.entries.get(response.leaseId);
    if (response.error !== undefined) {
      this.diagnostics.stats.renewalsFailed += 1;
      if (entry) {
        entry.lastFailure = response.error.message;
        this.armRenewTimer(entry, entry.ttlMs * RETRY_AFTER_FAILED_RENEWAL);
        this.diagnostics.emit("renewal-failed", {
          at: performance.now(),
          resource: entry.lease.resource,
          code: response.error.code,
          message: response.error.message,
        });
      }
      request.settle?.(errorFromRenewal(response.error, entry?.lease.resource));
      return;
    }
    if (response.expired) {
      if (entry) {
        this.lose(entry, "expired", `the lease on "${entry.lease.resource}" was lost: the service answered that it has expired or was released`);
      }
      request.settle?.({ expired: true });
      return;
    }
    const ttlMs = durationToMs(response.ttl);
    const expiresAt = request.sentAt + ttlMs;
    const renewal: Renewal = { expiresAt: new Date(request.sentAtWall + ttlMs), ttl: ttlMs };
    this.diagnostics.stats.renewalsConfirmed += 1;
    if (entry) entry.lastFailure = undefined;
    if (entry && expiresAt > entry.expiresAt) {
      entry.ttlMs = ttlMs;
      entry.expiresAt = expiresAt;
      this.armLossTimer(entry);
      entry.lease.confirmed(renewal.expiresAt, ttlMs);
      this.diagnostics.emit("renewed", {
        at: performance.now(),
        address: stream.endpoint.address,
        resource: entry.lease.resource,
        sentAt: request.sentAt,
        expiresAt: renewal.expiresAt,
        ttl: ttlMs,
      });
    }
    request.settle?.({ expired: false, renewal });
  }

  private onStreamEnd(stream: Stream, end: StatusObject): void {
    if (stream !== this.stream) return;
    this.streamFailed(stream, end.code, `the KeepAlive stream ended: ${end.details || `status ${end.code}`}`);
  }

  /** A renewal on `stream` went unanswered for `timeoutMs`: its replica is taken for dead. */
  private onOverdue(stream: Stream, timeoutMs: number): void {
    if (stream !== this.stream) return;
    this.streamFailed(stream, status.DEADLINE_EXCEEDED, `no answer to a renewal within ${timeoutMs} ms from ${stream.endpoint.address}`);
    stream.call.cancel();
  }

  /**
   * The stream broke. With another address still untried since the last
   * answer, a stream is opened there at once, every lease renewed on it and
   * unanswered renew() calls sent again; otherwise they fail and the keeper
   * reconnects after a backoff.
   */
  private streamFailed(stream: Stream, code: number, message: string): void {
    this.diagnostics.emit("stream-broken", { at: performance.now(), code, details: message, address: stream.endpoint.address });
    this.endpoints.failed(stream.endpoint);
    this.failuresInRow += 1;
    const failOver = this.endpoints.size > 1 && this.failuresInRow < this.endpoints.size;
    const unanswered = this.dropStream(failOver ? undefined : new UnavailableError(message));
    if (failOver && (this.entries.size > 0 || unanswered.length > 0)) {
      this.reconnectNow();
      for (const { leaseId, settle } of unanswered) this.send(this.stream!, leaseId, settle);
    } else if (this.entries.size > 0) {
      this.scheduleReconnect();
    }
  }

  /**
   * Forgets the current stream. Its unanswered renew() calls fail with
   * `error`, or without one are returned to be sent again.
   */
  private dropStream(error?: Error): { leaseId: string; settle: (outcome: Outcome) => void }[] {
    const stream = this.stream;
    if (!stream) return [];
    this.stream = undefined;
    this.diagnostics.stats.streamOpen = false;
    const unanswered: { leaseId: string; settle: (outcome: Outcome) => void }[] = [];
    for (const [leaseId, queue] of stream.inFlight) {
      for (const request of queue) {
        clearTimeout(request.overdue);
        if (!request.settle) continue;
        if (error) request.settle(error);
        else unanswered.push({ leaseId, settle: request.settle });
      }
    }
    stream.inFlight.clear();
    return unanswered;
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this.closed) return;
    // Several tries within the shortest ttl, whatever the backoff has grown to.
    const shortestTtl = Math.min(...[...this.entries.values()].map((entry) => entry.ttlMs));
    const delayMs = Math.min(this.backoff.next(), shortestTtl / 4);
    const stats = this.diagnostics.stats;
    stats.reconnectAttempts += 1;
    this.diagnostics.emit("reconnect-scheduled", { at: performance.now(), delayMs, attempt: stats.reconnectAttempts });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.entries.size > 0 && !this.stream) this.reconnectNow();
    }, delayMs);
  }

  /** Opens a stream now and renews every lease on it (they may be overdue). */
  private reconnectNow(): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.openStream(this.entries.size > 0);
    for (const entry of this.entries.values()) this.renew(entry);
  }

  private closeIfIdle(): void {
    if (this.entries.size > 0 || this.pendingRenewCalls > 0) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.backoff.reset();
    const stream = this.stream;
    this.dropStream(new UnavailableError("the KeepAlive stream was closed"));
    if (stream) endStream(stream.call);
  }

  private lose(entry: Entry, reason: LeaseLossReason, message: string): void {
    this.untrack(entry.leaseId);
    this.diagnostics.emit("lost", { at: performance.now(), resource: entry.lease.resource, reason });
    entry.lease.lost(new LeaseLostError(entry.lease.resource, reason, message));
  }

  private armRenewTimer(entry: Entry, delayMs: number): void {
    clearTimeout(entry.renewTimer);
    entry.renewTimer = setTimeout(() => {
      entry.renewTimer = undefined;
      if (this.entries.get(entry.leaseId) === entry) this.renew(entry);
    }, Math.max(0, delayMs));
    entry.renewTimer.unref();
  }

  private armLossTimer(entry: Entry): void {
    clearTimeout(entry.lossTimer);
    const delayMs = entry.expiresAt - lossGuardMs(entry.ttlMs) - performance.now();
    entry.lossTimer = setTimeout(() => {
      if (this.entries.get(entry.leaseId) !== entry) return;
      const at = new Date(Date.now() + (entry.expiresAt - performance.now())).toISOString();
      const failure = entry.lastFailure === undefined ? "" : ` (the last renewal failed: ${entry.lastFailure})`;
      this.lose(entry, "unconfirmed", `the lease on "${entry.lease.resource}" was lost: no renewal was confirmed before its expiry at ${at}${failure}`);
    }, Math.max(0, delayMs));
    entry.lossTimer.unref();
  }
}

/**
 * Half-closes a stream nothing is left on, so that the service ends it, and
 * cancels it if that has not happened within a second (a service that does
 * not answer must not keep this process alive). Not a cancel at once: grpc-js
 * (1.14) can lose a cancel sent while the stream is still being opened,
 * leaving it open at both ends, and each lock opens the stream anew: a client
 * then stopped getting answers once it had taken as many locks as the
 * service's grpc.max_concurrent_streams (1,000).
 */
function endStream(call: Stream["call"]): void {
  const timer = setTimeout(() => call.cancel(), 1_000);
  timer.unref();
  call.on("status", () => clearTimeout(timer));
  call.end();
}
