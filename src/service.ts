import { setMaxListeners } from "node:events";
import { resolve } from "node:path";
import { assertPlaintextAllowed } from "./config/listen-policy.ts";
import { openSecurityFiles } from "./config/security-files.ts";
import { systemClock } from "./core/clock.ts";
import { ShuttingDownError } from "./core/errors.ts";
import { DEFAULT_SERVICE_LIMITS, type ServiceLimits } from "./core/service-limits.ts";
import type { TlsFiles } from "./tls/tls-settings.ts";
import { LockManager } from "./core/lock-manager.ts";
import { startGrpcServer, type RunningGrpcServer } from "./grpc/grpc-server.ts";
import { ReadinessGate } from "./grpc/readiness-gate.ts";
import { startHttpServer, type RunningHttpServer } from "./http/health-server.ts";
import type { LeaseStore } from "./core/lease-store.ts";
import { EtcdClient } from "./store/etcd/etcd-client.ts";
import { EtcdLeaseStore } from "./store/etcd/etcd-lease-store.ts";
import { checkEtcdStoreSettings, readEtcdTls, type EtcdStoreSettings } from "./store/etcd/etcd-store-settings.ts";
import type { FileSystem } from "./store/file-system.ts";
import { LeaseFileStore } from "./store/lease-file-store.ts";
import type { StoreKind } from "./store/store-kind.ts";
import { stopHookFromEnv } from "./store/stop-hook.ts";
import type { FsyncMode, FsyncPlacement } from "./store/fsync-placement.ts";
import { VERSION } from "./cli/version.ts";
import { grpcMetricsInterceptor } from "./metrics/grpc-metrics-interceptor.ts";
import { instrumentStore } from "./metrics/instrumented-store.ts";
import { ServiceMetrics } from "./metrics/service-metrics.ts";
import { runtimeName } from "./runtime-name.ts";
import { logLockEvents, logRejectedCalls, rejectedCallInterceptor } from "./log/lock-event-log.ts";
import type { Logger } from "./log/logger.ts";

export interface ServiceOptions {
  /** The lease files' dir: the file store, the default. Give this or `etcd`, not both. */
  lockDir?: string;
  /** The etcd store (docs/etcd.md): the leases live in etcd, shared by every replica. */
  etcd?: EtcdStoreSettings;
  grpcListen: string;
  httpListen: string;
  /** Plain messages, at info; `logger` (levels, fields) takes precedence. */
  log?: (message: string) => void;
  logger?: Logger;
  /**
   * Called once the gRPC server is bound, before the leases are loaded:
   * from then on health answers (NOT_SERVING) and lock calls get UNAVAILABLE.
   */
  onGrpcListening?: (address: string) => void;
  /** The file operations of the lease store (tests inject faults and gates). */
  fs?: FileSystem;
  /** Where the file store's fsyncs run (default auto; see fsync-placement.ts). */
  fsync?: FsyncMode;
  /** Serve gRPC and HTTP over TLS (mutual TLS with clientCertAuth). */
  tls?: TlsFiles;
  /** Turns authorization on: principals, tokens and grants (docs/security.md). */
  authFile?: string;
  /** Allow plaintext on non-loopback addresses. */
  insecureListen?: boolean;
  /** Waiters, streams, connections: see ServiceLimits; defaults where absent. */
  limits?: Partial<ServiceLimits>;
  /** Events a Watch stream may fall behind by before it is ended with RESOURCE_EXHAUSTED. */
  watchQueueLimit?: number;
  /** Prometheus metrics on GET /metrics (default true). */
  metrics?: boolean;
}

export interface RunningService {
  grpcAddress: string;
  httpAddress: string;
  store: StoreKind;
  /** The file store's lock dir (absolute); undefined with etcd. */
  lockDir: string | undefined;
  /** Where the leases live, for logs: the lock dir, or etcd's endpoints and prefix. */
  location: string;
  /** Re-reads the certificates and the auth file now (SIGHUP); a bad new version keeps the old one. */
  reload(): Promise<void>;
  /** Graceful: stop accepting, end waits and streams, finish calls in flight. Lease files stay. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Wires the lock manager, its store and the two edges together. Resolves once
 * the service is ready: the lease files are loaded and lock calls are served.
 *
 * The gRPC server binds first, so that health checks get an answer
 * (NOT_SERVING) while a large lock dir is being loaded, and a port that is
 * taken fails fast. Lock calls wait behind a readiness gate: before the
 * manager knows the leases on disk it could not tell a free resource from a
 * held one.
 */
export async function startService(options: ServiceOptions): Promise<RunningService> {
  const { logger } = options;
  const log = logger ? (message: string) => logger.info(message) : (options.log ?? (() => {}));
  const warn = logger ? (message: string) => logger.warn(message) : log;
  assertPlaintextAllowed(
    [
      { flag: "--grpc-listen", address: options.grpcListen },
      { flag: "--http-listen", address: options.httpListen },
    ],
    options.tls !== undefined,
    options.insecureListen === true,
  );
  // Read before anything binds: a bad certificate, auth file or etcd setting fails the start.
  const opened = await openStore(options, warn);
  let security;
  try {
    security = await openSecurityFiles(options.tls, options.authFile, warn);
  } catch (err) {
    opened.disconnect();
    throw err;
  }
  const { kind, lockDir, location } = opened;
  const leases = kind === "file" ? "lease files" : "leases";
  const metrics = options.metrics === false ? undefined : new ServiceMetrics({ version: VERSION, runtime: runtimeName(), store: kind });
  const store = metrics ? instrumentStore(opened.store, metrics) : opened.store;
  const limits: ServiceLimits = { ...DEFAULT_SERVICE_LIMITS, ...options.limits };
  const manager = new LockManager({ store, log, clock: systemClock, limits });
  metrics?.attach(manager);
  if (opened.fsyncs) metrics?.attachFsyncs(opened.fsyncs);
  if (logger) logLockEvents(manager, logger);
  const onRejected = logger ? logRejectedCalls(logger) : undefined;
  const interceptors = metrics ? [grpcMetricsInterceptor(metrics, onRejected)] : onRejected ? [rejectedCallInterceptor(onRejected)] : [];
  const shutdown = new AbortController();
  // Every call in flight listens for shutdown (and stops listening when it
  // ends): many at once is normal, not a leak.
  setMaxListeners(0, shutdown.signal);
  const readiness = new ReadinessGate(`loading ${leases} from ${location}`);

  const { tls, auth } = security;
  const access = () => auth?.value;
  let grpc: RunningGrpcServer;
  try {
    grpc = await startGrpcServer(manager, {
      listen: options.grpcListen,
      shutdown,
      readiness,
      log,
      watchQueueLimit: options.watchQueueLimit,
      interceptors,
      credentials: tls?.credentials,
      access,
      limits,
    });
  } catch (err) {
    security.close();
    opened.disconnect();
    throw err;
  }
  let http: RunningHttpServer | undefined;
  try {
    log(`grpc listening on ${grpc.address}; loading ${leases} from ${location} (health NOT_SERVING until done)`);
    options.onGrpcListening?.(grpc.address);
    const httpTls = tls && options.tls && { context: tls.files.value, requireClientCertificate: options.tls.clientCertAuth };
    http = await startHttpServer(manager, options.httpListen, { metrics, tls: httpTls, access });
    const started = http;
    tls?.onChange((context) => started.updateTls(context));
    await manager.start();
  } catch (err) {
    security.close();
    await abandon(grpc, http, manager, shutdown);
    opened.disconnect();
    throw err;
  }
  readiness.open();

  let stopping: Promise<void> | undefined;
  const running = http;
  return {
    grpcAddress: grpc.address,
    httpAddress: running.address,
    store: kind,
    lockDir,
    location,
    reload: () => security.reload(),
    stop(graceMs = 5_000) {
      stopping ??= (async () => {
        security.close();
        // Health turns NOT_SERVING and Watch streams end first, so balancers
        // stop sending before the listeners close.
        shutdown.abort(new ShuttingDownError()); // also ends KeepAlive and reflection streams
        manager.close(); // fails waiters with UNAVAILABLE
        await Promise.all([grpc.stop(graceMs), running.stop()]);
        opened.disconnect();
      })();
      return stopping;
    },
  };
}

/** The store the options ask for, and how to let go of what it connected to. */
interface OpenedStore {
  kind: StoreKind;
  store: LeaseStore;
  lockDir: string | undefined;
  location: string;
  /** Closes the connections to etcd (after the manager closed the store); nothing for the file store. */
  disconnect(): void;
  /** The file store's fsync placement (for metrics); undefined with etcd or an injected file system. */
  fsyncs?: FsyncPlacement;
}

/** The lease files in `lockDir`, or etcd (its TLS files read now). */
async function openStore(options: ServiceOptions, warn: (message: string) => void): Promise<OpenedStore> {
  if (options.etcd === undefined) {
    if (options.lockDir === undefined) throw new Error("no store: give a lock dir (lease files) or etcd settings");
    const lockDir = resolve(options.lockDir);
    const store = new LeaseFileStore({ dir: lockDir, onWarning: warn, fs: options.fs, fsync: options.fsync, pauseHook: stopHookFromEnv(process.env), clock: systemClock });
    return { kind: "file", store, lockDir, location: lockDir, disconnect: () => {}, fsyncs: store.fsyncs };
  }
  if (options.lockDir !== undefined) throw new Error("a lock dir and etcd were both given: one deployment uses one store");
  if (options.fsync !== undefined) throw new Error("fsync placement is for the lease-file store; etcd makes its own writes durable");
  checkEtcdStoreSettings(options.etcd);
  const client = new EtcdClient({ endpoints: options.etcd.endpoints, tls: await readEtcdTls(options.etcd) });
  const store = new EtcdLeaseStore({ client, prefix: options.etcd.prefix, tokenFloor: options.etcd.tokenFloor, clock: systemClock, onWarning: warn });
  return { kind: "etcd", store, lockDir: undefined, location: store.location, disconnect: () => client.close() };
}

/** Undoes a start that failed half-way. */
async function abandon(
  grpc: RunningGrpcServer,
  http: RunningHttpServer | undefined,
  manager: LockManager,
  shutdown: AbortController,
): Promise<void> {
  shutdown.abort(new ShuttingDownError());
  manager.close();
  await Promise.all([grpc.stop(0), http?.stop()]);
}
