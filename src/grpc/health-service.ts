import { status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream } from "@grpc/grpc-js";
import {
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthCheckRequest,
  type HealthCheckResponse,
  type HealthListRequest,
  type HealthListResponse,
  type HealthServer,
} from "../gen/grpc/health/v1/health.ts";
import type { ReadinessGate } from "./readiness-gate.ts";

// grpc.health.v1.Health (https://github.com/grpc/grpc/blob/master/doc/health-checking.md),
// implemented here rather than with grpc-health-check, which loads its
// health.proto from disk at run time and so breaks in a bundled executable.

/** Check re-probes the lock dir at most this often; calls in between share the answer. */
const CHECK_PROBE_MAX_AGE_MS = 1_000;
/** While any Watch stream is open, the lock dir is re-probed this often and changes pushed. */
const WATCH_PROBE_INTERVAL_MS = 2_000;

export interface HealthOptions {
  /** The services reported besides "" (the server as a whole). */
  services: string[];
  readiness: ReadinessGate;
  shutdown: AbortSignal;
  /** Throws when the lock dir cannot be written now. */
  probeWritable: () => Promise<void>;
  log?: (message: string) => void;
}

/**
 * The serving status, the same for "" and every service: NOT_SERVING while the
 * service starts, once shutdown begins, and while the lock dir cannot be
 * written (every Acquire would fail); SERVING otherwise.
 */
export class ServingStatusMonitor {
  private probe: { writable: boolean; at: number } | undefined;
  private probing: Promise<void> | undefined;
  private lastStatus: ServingStatus;
  private readonly listeners = new Set<(status: ServingStatus) => void>();
  private timer: NodeJS.Timeout | undefined;
  private readonly log: (message: string) => void;

  constructor(private readonly options: HealthOptions) {
    this.log = options.log ?? (() => {});
    this.lastStatus = this.current();
    // Probe as soon as the service is ready, so watchers hear SERVING at once.
    options.readiness.onOpen(() => void this.refresh(0));
    options.shutdown.addEventListener("abort", () => this.changed(), { once: true });
  }

  /** The status from what is known now (the last probe); never probes. */
  current(): ServingStatus {
    const { readiness, shutdown } = this.options;
    if (shutdown.aborted || !readiness.isReady) return ServingStatus.NOT_SERVING;
    return this.probe?.writable ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  }

  /** The status after a probe no older than `maxAgeMs` (Check's default). */
  async status(maxAgeMs = CHECK_PROBE_MAX_AGE_MS): Promise<ServingStatus> {
    await this.refresh(maxAgeMs);
    return this.current();
  }

  /**
   * Calls `listener` with every change of status (not with the current one).
   * While anyone listens, the lock dir is re-probed every watch interval.
   */
  subscribe(listener: (status: ServingStatus) => void): () => void {
    this.listeners.add(listener);
    if (this.timer === undefined && !this.options.shutdown.aborted) {
      this.timer = setInterval(() => void this.refresh(WATCH_PROBE_INTERVAL_MS / 2), WATCH_PROBE_INTERVAL_MS);
      this.timer.unref();
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stopTimer();
    };
  }

  private stopTimer(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Probes unless the last probe is younger than `maxAgeMs`; concurrent callers share one probe. */
  private refresh(maxAgeMs: number): Promise<void> {
    const { readiness, shutdown } = this.options;
    // Not ready or stopping: NOT_SERVING whatever the disk says.
    if (!readiness.isReady || shutdown.aborted) return Promise.resolve();
    if (this.probe && Date.now() - this.probe.at < maxAgeMs) return Promise.resolve();
    this.probing ??= this.runProbe().finally(() => (this.probing = undefined));
    return this.probing;
  }

  private async runProbe(): Promise<void> {
    let failure: Error | undefined;
    try {
      await this.options.probeWritable();
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err));
    }
    const writable = failure === undefined;
    if (this.probe !== undefined && this.probe.writable !== writable) {
      this.log(writable ? "the store is writable again: health SERVING" : `health NOT_SERVING: ${failure!.message}`);
    } else if (this.probe === undefined && !writable) {
      this.log(`health NOT_SERVING: ${failure!.message}`);
    }
    this.probe = { writable, at: Date.now() };
    this.changed();
  }

  /** Tells the listeners if the status differs from the last one told. */
  private changed(): void {
    const now = this.current();
    if (this.options.shutdown.aborted) this.stopTimer();
    if (now === this.lastStatus) return;
    this.lastStatus = now;
    for (const listener of [...this.listeners]) listener(now);
  }
}

/** The Health service over a monitor. Watch streams end (after NOT_SERVING) when shutdown begins. */
export function healthService(monitor: ServingStatusMonitor, options: HealthOptions): HealthServer {
  const known = new Set(["", ...options.services]);
  const { shutdown } = options;

  function check(call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, callback: sendUnaryData<HealthCheckResponse>): void {
    const { service } = call.request;
    if (!known.has(service)) {
      callback({ code: status.NOT_FOUND, details: `unknown service ${JSON.stringify(service)}` });
      return;
    }
    monitor.status().then(
      (serving) => callback(null, { status: serving }),
      (err: Error) => callback({ code: status.INTERNAL, details: `health check failed: ${err.message}` }),
    );
  }

  function watch(call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>): void {
    const isKnown = known.has(call.request.service);
    // The set of services never changes, so an unknown one stays unknown; the
    // call stays open all the same, as the protocol says.
    let last: ServingStatus | undefined;
    let ended = false;
    const send = (serving: ServingStatus) => {
      if (ended || serving === last || call.cancelled || call.destroyed) return;
      last = serving;
      call.write({ status: serving });
    };
    const unsubscribe = isKnown ? monitor.subscribe(send) : () => {};
    const onShutdown = () => {
      if (isKnown) send(ServingStatus.NOT_SERVING);
      ended = true;
      cleanup();
      call.end();
    };
    const cleanup = () => {
      unsubscribe();
      shutdown.removeEventListener("abort", onShutdown);
    };
    call.on("cancelled", cleanup);
    call.on("error", cleanup);
    if (!isKnown) {
      send(ServingStatus.SERVICE_UNKNOWN);
    } else {
      // The first answer comes after a fresh enough probe, so a new watcher
      // is never told stale news that is corrected a moment later.
      void monitor.status().then(send, () => {});
    }
    if (shutdown.aborted) onShutdown();
    else shutdown.addEventListener("abort", onShutdown, { once: true });
  }

  function list(_call: ServerUnaryCall<HealthListRequest, HealthListResponse>, callback: sendUnaryData<HealthListResponse>): void {
    monitor.status().then(
      (serving) =>
        callback(null, { statuses: Object.fromEntries([...known].map((service) => [service, { status: serving }])) }),
      (err: Error) => callback({ code: status.INTERNAL, details: `health list failed: ${err.message}` }),
    );
  }

  return { check, watch, list };
}
