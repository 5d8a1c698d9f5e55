import { resolve } from "node:path";
import { ShuttingDownError } from "./core/errors.ts";
import { LockManager } from "./core/lock-manager.ts";
import { startGrpcServer } from "./grpc/grpc-server.ts";
import { startHttpServer } from "./http/health-server.ts";
import { LeaseFileStore } from "./store/lease-file-store.ts";

export interface ServiceOptions {
  lockDir: string;
  grpcListen: string;
  httpListen: string;
  log?: (message: string) => void;
}

export interface RunningService {
  grpcAddress: string;
  httpAddress: string;
  lockDir: string;
  /** Graceful: stop accepting, end waits and streams, finish calls in flight. Lease files stay. */
  stop(graceMs?: number): Promise<void>;
}

/** Wires the lock manager, its store and the two edges together. */
export async function startService(options: ServiceOptions): Promise<RunningService> {
  const log = options.log ?? (() => {});
  const lockDir = resolve(options.lockDir);
  const store = new LeaseFileStore({ dir: lockDir, onWarning: log });
  const manager = new LockManager({ store, log });
  await manager.start();
  const shutdown = new AbortController();
  const grpc = await startGrpcServer(manager, options.grpcListen, shutdown);
  let http;
  try {
    http = await startHttpServer(manager, options.httpListen);
  } catch (err) {
    await grpc.stop(0);
    manager.close();
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    grpcAddress: grpc.address,
    httpAddress: http.address,
    lockDir,
    stop(graceMs = 5_000) {
      stopping ??= (async () => {
        manager.close(); // fails waiters with UNAVAILABLE
        shutdown.abort(new ShuttingDownError()); // ends KeepAlive streams
        await Promise.all([grpc.stop(graceMs), http.stop()]);
      })();
      return stopping;
    },
  };
}
