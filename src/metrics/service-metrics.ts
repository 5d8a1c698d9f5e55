import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { LockEvent } from "../core/lock-events.ts";
import type { LockManager } from "../core/lock-manager.ts";

// The service's Prometheus metrics (GET /metrics), one registry per service.
// No label carries a resource name or holder: their number is unbounded.
// docs/operations.md says what each means.

/** Lock waits and holds span milliseconds to hours. */
const LOCK_TIME_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600];
/** Store operations and hand-overs: a fast local disk to a stalled one. */
const FAST_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
/** How often the store's writability is re-probed at most, however often it is scraped. */
const STORE_PROBE_MAX_AGE_MS = 1_000;

export interface ServiceMetricsOptions {
  version: string;
  runtime: string;
  store: string;
}

export class ServiceMetrics {
  readonly registry = new Registry();

  readonly acquireTotal = new Counter({
    name: "mcplockd_acquire_total",
    help: "Acquire calls answered, by mode (try once or wait) and result (granted, busy, cancelled, deadline, invalid, unavailable, error).",
    labelNames: ["mode", "result"] as const,
    registers: [this.registry],
  });
  readonly releaseTotal = new Counter({
    name: "mcplockd_release_total",
    help: "Release calls answered, by result (released, not_found, invalid, unavailable, error).",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  readonly leaseExpiredTotal = new Counter({
    name: "mcplockd_lease_expired_total",
    help: "Leases that ran out without being renewed or released (their holder stopped renewing).",
    registers: [this.registry],
  });
  readonly keepAliveTotal = new Counter({
    name: "mcplockd_keepalive_total",
    help: "KeepAlive renewals answered, by result (renewed, expired: the lease was gone).",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  readonly handoffTotal = new Counter({
    name: "mcplockd_handoff_total",
    help: "Leases passed straight from a releasing holder to the next waiter.",
    registers: [this.registry],
  });
  readonly storeErrorsTotal = new Counter({
    name: "mcplockd_store_errors_total",
    help: "Lease store operations that failed, by operation and error code (errno or error class).",
    labelNames: ["op", "code"] as const,
    registers: [this.registry],
  });
  readonly keepAliveStreams = new Gauge({
    name: "mcplockd_keepalive_streams",
    help: "KeepAlive streams open now.",
    registers: [this.registry],
  });
  readonly acquireWaitSeconds = new Histogram({
    name: "mcplockd_acquire_wait_seconds",
    help: "Time from an Acquire call's arrival to its answer, by mode (for mode=wait: the time spent queueing).",
    labelNames: ["mode"] as const,
    buckets: LOCK_TIME_BUCKETS,
    registers: [this.registry],
  });
  readonly leaseHeldSeconds = new Histogram({
    name: "mcplockd_lease_held_seconds",
    help: "How long leases were held, observed when they end (released, expired or handed over).",
    buckets: LOCK_TIME_BUCKETS,
    registers: [this.registry],
  });
  readonly handoffLatencySeconds = new Histogram({
    name: "mcplockd_handoff_latency_seconds",
    help: "Time the store took to end a lease and grant it to the next waiter in one step (the hand-over's own cost).",
    buckets: FAST_BUCKETS,
    registers: [this.registry],
  });
  readonly storeOpDurationSeconds = new Histogram({
    name: "mcplockd_store_op_duration_seconds",
    help: "Duration of lease store operations, by operation.",
    labelNames: ["op"] as const,
    buckets: FAST_BUCKETS,
    registers: [this.registry],
  });

  // gRPC server metrics named as etcd (go-grpc-prometheus) names them.
  readonly grpcStarted = new Counter({
    name: "grpc_server_started_total",
    help: "RPCs started on the server.",
    labelNames: ["grpc_type", "grpc_service", "grpc_method"] as const,
    registers: [this.registry],
  });
  readonly grpcHandled = new Counter({
    name: "grpc_server_handled_total",
    help: "RPCs completed on the server, whatever their status.",
    labelNames: ["grpc_type", "grpc_service", "grpc_method", "grpc_code"] as const,
    registers: [this.registry],
  });
  readonly grpcReceived = new Counter({
    name: "grpc_server_msg_received_total",
    help: "Stream messages received on the server (one per unary request).",
    labelNames: ["grpc_type", "grpc_service", "grpc_method"] as const,
    registers: [this.registry],
  });
  readonly grpcSent = new Counter({
    name: "grpc_server_msg_sent_total",
    help: "Stream messages sent by the server (one per unary response).",
    labelNames: ["grpc_type", "grpc_service", "grpc_method"] as const,
    registers: [this.registry],
  });

  private storeProbe: { up: boolean; at: number } | undefined;
  private probing: Promise<void> | undefined;
  private stopListening: (() => void) | undefined;

  constructor(private readonly options: ServiceMetricsOptions) {
    // Deno's emulation of process and perf_hooks breaks prom-client's
    // default process metrics: there only ours are registered.
    if (options.runtime !== "deno") collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: "mcplockd_build_info",
      help: "Always 1; the labels say which build, runtime and store serve.",
      labelNames: ["version", "runtime", "store"] as const,
      registers: [this.registry],
    }).set({ version: options.version, runtime: options.runtime, store: options.store }, 1);
  }

  /** Counts what the manager reports and reads its gauges at each scrape. */
  attach(manager: LockManager): void {
    this.stopListening = manager.subscribe((event) => this.onEvent(event));
    const self = this;
    new Gauge({
      name: "mcplockd_leases_active",
      help: "Resources held now by a readable lease (clients of this service and file-protocol processes).",
      registers: [this.registry],
      collect() {
        this.set(manager.snapshot().filter((event) => event.state === "held").length);
      },
    });
    new Gauge({
      name: "mcplockd_unreadable_lease_files",
      help: "Lease files that cannot be parsed (each blocks its resource until it is an hour old).",
      registers: [this.registry],
      collect() {
        this.set(manager.snapshot().filter((event) => event.state === "unreadable").length);
      },
    });
    new Gauge({
      name: "mcplockd_oldest_lease_age_seconds",
      help: "How long the longest-held lease held now has been held (0 when none): a stuck holder that keeps renewing shows here.",
      registers: [this.registry],
      collect() {
        const now = Date.now();
        let oldest = 0;
        for (const event of manager.snapshot()) {
          if (event.state === "held" && event.acquiredAt !== undefined) oldest = Math.max(oldest, now - event.acquiredAt);
        }
        this.set(oldest / 1000);
      },
    });
    new Gauge({
      name: "mcplockd_waiters",
      help: "Acquire calls waiting in a queue now, over all resources.",
      registers: [this.registry],
      collect() {
        this.set(manager.waiterCount());
      },
    });
    new Gauge({
      name: "mcplockd_store_up",
      help: "1 when the lock dir can be written now, 0 when not (every Acquire would fail).",
      registers: [this.registry],
      async collect() {
        this.set((await self.storeUp(manager)) ? 1 : 0);
      },
    });
  }

  detach(): void {
    this.stopListening?.();
  }

  /** The text exposition format. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private onEvent(event: LockEvent): void {
    switch (event.type) {
      case "EXPIRED":
        this.leaseExpiredTotal.inc();
        this.observeHeld(event.time, event.acquiredAt);
        break;
      case "RELEASED":
      case "FORCE_RELEASED":
        this.observeHeld(event.time, event.acquiredAt);
        break;
      case "HANDED_OVER":
        this.handoffTotal.inc();
        this.observeHeld(event.time, event.previous?.acquiredAt);
        break;
      default:
    }
  }

  private observeHeld(at: number, acquiredAt: number | undefined): void {
    if (acquiredAt !== undefined && acquiredAt > 0) this.leaseHeldSeconds.observe(Math.max(0, at - acquiredAt) / 1000);
  }

  private async storeUp(manager: LockManager): Promise<boolean> {
    if (this.storeProbe === undefined || Date.now() - this.storeProbe.at >= STORE_PROBE_MAX_AGE_MS) {
      this.probing ??= manager
        .probeWritable()
        .then(
          () => true,
          () => false,
        )
        .then((up) => {
          this.storeProbe = { up, at: Date.now() };
        })
        .finally(() => (this.probing = undefined));
      await this.probing;
    }
    return this.storeProbe!.up;
  }
}
