import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import type { FsyncPlacement } from "../store/fsync-placement.ts";
import type { LockEvent } from "../core/lock-events.ts";
import type { LockManager } from "../core/lock-manager.ts";
import { HotCounter, HotHistogram } from "./hot-metrics.ts";

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

  readonly acquireTotal = new HotCounter(
    this.registry,
    "mcplockd_acquire_total",
    "Acquire calls answered, by mode (try once or wait) and result (granted, busy, cancelled, deadline, invalid, unavailable, error).",
    ["mode", "result"],
  );
  readonly releaseTotal = new HotCounter(
    this.registry,
    "mcplockd_release_total",
    "Release calls answered, by result (released, not_found, invalid, unavailable, error).",
    ["result"],
  );
  readonly leaseExpiredTotal = new HotCounter(
    this.registry,
    "mcplockd_lease_expired_total",
    "Leases that ran out without being renewed or released (their holder stopped renewing).",
    [],
  );
  readonly keepAliveTotal = new HotCounter(
    this.registry,
    "mcplockd_keepalive_total",
    "KeepAlive renewals answered, by result (renewed, expired: the lease was gone).",
    ["result"],
  );
  readonly handoffTotal = new HotCounter(
    this.registry,
    "mcplockd_handoff_total",
    "Leases passed straight from a releasing holder to the next waiter.",
    [],
  );
  readonly storeErrorsTotal = new HotCounter(
    this.registry,
    "mcplockd_store_errors_total",
    "Lease store operations that failed, by operation and error code (errno or error class).",
    ["op", "code"],
  );
  readonly keepAliveStreams = new Gauge({
    name: "mcplockd_keepalive_streams",
    help: "KeepAlive streams open now.",
    registers: [this.registry],
  });
  readonly acquireWaitSeconds = new HotHistogram(
    this.registry,
    "mcplockd_acquire_wait_seconds",
    "Time from an Acquire call's arrival to its answer, by mode (for mode=wait: the time spent queueing).",
    ["mode"],
    LOCK_TIME_BUCKETS,
  );
  readonly leaseHeldSeconds = new HotHistogram(
    this.registry,
    "mcplockd_lease_held_seconds",
    "How long leases were held, observed when they end (released, expired or handed over).",
    [],
    LOCK_TIME_BUCKETS,
  );
  readonly handoffLatencySeconds = new HotHistogram(
    this.registry,
    "mcplockd_handoff_latency_seconds",
    "Time the store took to end a lease and grant it to the next waiter in one step (the hand-over's own cost).",
    [],
    FAST_BUCKETS,
  );
  readonly storeOpDurationSeconds = new HotHistogram(
    this.registry,
    "mcplockd_store_op_duration_seconds",
    "Duration of lease store operations, by operation.",
    ["op"],
    FAST_BUCKETS,
  );

  // gRPC server metrics named as etcd (go-grpc-prometheus) names them.
  readonly grpcStarted = new HotCounter(
    this.registry,
    "grpc_server_started_total",
    "RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
  );
  readonly grpcHandled = new HotCounter(
    this.registry,
    "grpc_server_handled_total",
    "RPCs completed on the server, whatever their status.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
  );
  readonly grpcReceived = new HotCounter(
    this.registry,
    "grpc_server_msg_received_total",
    "Stream messages received on the server (one per unary request).",
    ["grpc_type", "grpc_service", "grpc_method"],
  );
  readonly grpcSent = new HotCounter(
    this.registry,
    "grpc_server_msg_sent_total",
    "Stream messages sent by the server (one per unary response).",
    ["grpc_type", "grpc_service", "grpc_method"],
  );

  private readonly expired = this.leaseExpiredTotal.for({});
  private readonly handoffs = this.handoffTotal.for({});
  private readonly held = this.leaseHeldSeconds.for({});
  private storeProbe: { up: boolean; at: number } | undefined;
  private probing: Promise<void> | undefined;

  constructor(options: ServiceMetricsOptions) {
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
    manager.subscribe((event) => this.onEvent(event), { renewals: false });
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
      help: "1 when the store (the lock dir, or etcd) can be written now, 0 when not (every Acquire would fail).",
      registers: [this.registry],
      async collect() {
        this.set((await self.storeUp(manager)) ? 1 : 0);
      },
    });
  }

  /** Where the file store's fsyncs ran, and how long they take (--fsync). */
  attachFsyncs(placement: FsyncPlacement): void {
    new Counter({
      name: "mcplockd_fsyncs_total",
      help: "fsyncs of the lease-file store's grants and hand-overs, by where they ran (loop: the event loop; pool: the thread pool).",
      labelNames: ["on"] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc({ on: "loop" }, placement.counts.loop);
        this.inc({ on: "pool" }, placement.counts.pool);
      },
    });
    new Gauge({
      name: "mcplockd_fsync_seconds_average",
      help: "Moving average of the last ten or so fsyncs of new lease files, with any wait for a thread-pool thread: how slow the disk is.",
      registers: [this.registry],
      collect() {
        this.set((placement.averageMs ?? 0) / 1000);
      },
    });
  }

  /** The text exposition format. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private onEvent(event: LockEvent): void {
    switch (event.type) {
      case "EXPIRED":
        this.expired.inc();
        this.observeHeld(event.time, event.acquiredAt);
        break;
      case "RELEASED":
      case "FORCE_RELEASED":
        this.observeHeld(event.time, event.acquiredAt);
        break;
      case "HANDED_OVER":
        this.handoffs.inc();
        this.observeHeld(event.time, event.previous?.acquiredAt);
        break;
      default:
    }
  }

  private observeHeld(at: number, acquiredAt: number | undefined): void {
    if (acquiredAt !== undefined && acquiredAt > 0) this.held.observe(Math.max(0, at - acquiredAt) / 1000);
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
