import { setMaxListeners } from "node:events";
import { resolve } from "node:path";
import { systemClock } from "./core/clock.ts";
import { ShuttingDownError } from "./core/errors.ts";
import { LockManager } from "./core/lock-manager.ts";
import { startGrpcServer, type RunningGrpcServer } from "./grpc/grpc-server.ts";
import { ReadinessGate } from "./grpc/readiness-gate.ts";
import { startHttpServer, type RunningHttpServer } from "./http/health-server.ts";
import type { FileSystem } from "./store/file-system.ts";
import { LeaseFileStore } from "./store/lease-file-store.ts";
import { stopHookFromEnv } from "./store/stop-hook.ts";

export interface ServiceOptions {
  lockDir: string;
  grpcListen: string;
  httpListen: string;
  log?: (message: string) => void;
  /**
   * Called once the gRPC server is bound, before the lease files are loaded:
   * from then on health answers (NOT_SERVING) and lock calls get UNAVAILABLE.
   */
  onGrpcListening?: (address: string) => void;
  /** The file operations of the lease store (tests inject faults and gates). */
  fs?: FileSystem;
}

export interface RunningService {
  grpcAddress: string;
  httpAddress: string;
  lockDir: string;
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
  const log = options.log ?? (() => {});
  const lockDir = resolve(options.lockDir);
  const store = new LeaseFileStore({ dir: lockDir, onWarning: log, fs: options.fs, pauseHook: stopHookFromEnv(process.env), clock: systemClock });
  const manager = new LockManager({ store, log, clock: systemClock });
  const shutdown = new AbortController();
  // Every call in flight listens for shutdown (and stops listening when it
  // ends): many at once is normal, not a leak.
  setMaxListeners(0, shutdown.signal);
  const readiness = new ReadinessGate(`loading lease files from ${lockDir}`);

  const grpc = await startGrpcServer(manager, { listen: options.grpcListen, shutdown, readiness, log });
  let http: RunningHttpServer | undefined;
  try {
    log(`grpc listening on ${grpc.address}; loading lease files (health NOT_SERVING until done)`);
    options.onGrpcListening?.(grpc.address);
    http = await startHttpServer(manager, options.httpListen);
    await manager.start();
  } catch (err) {
    await abandon(grpc, http, manager, shutdown);
    throw err;
  }
  readiness.open();

  let stopping: Promise<void> | undefined;
  const running = http;
  return {
    grpcAddress: grpc.address,
    httpAddress: running.address,
    lockDir,
    stop(graceMs = 5_000) {
      stopping ??= (async () => {
        // Health turns NOT_SERVING and Watch streams end first, so balancers
        // stop sending before the listeners close.
        shutdown.abort(new ShuttingDownError()); // also ends KeepAlive and reflection streams
        manager.close(); // fails waiters with UNAVAILABLE
        await Promise.all([grpc.stop(graceMs), running.stop()]);
      })();
      return stopping;
    },
  };
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
