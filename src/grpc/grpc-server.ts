import { Server, ServerCredentials } from "@grpc/grpc-js";
import type { LockManager } from "../core/lock-manager.ts";
import { LockServiceService } from "../gen/mcplockd/v1/lock.ts";
import { lockService } from "./lock-service.ts";

// Server-side HTTP/2 keepalive finds dead peers of long KeepAlive streams
// (grpc-js leaves it effectively off by default). Clients may ping every 10s.
const SERVER_OPTIONS = {
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.http2.min_ping_interval_without_data_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
};

export interface RunningGrpcServer {
  /** host:port actually bound (the port is real even when 0 was asked for). */
  address: string;
  /** Stops accepting, ends waits and streams, lets unary calls in flight finish. */
  stop(graceMs: number): Promise<void>;
}

export async function startGrpcServer(manager: LockManager, listen: string, shutdown: AbortController): Promise<RunningGrpcServer> {
  const server = new Server(SERVER_OPTIONS);
  server.addService(LockServiceService, lockService(manager, shutdown.signal));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listen, ServerCredentials.createInsecure(), (err, boundPort) => (err ? reject(err) : resolve(boundPort))),
  );
  const host = listen.slice(0, listen.lastIndexOf(":"));
  let stopping: Promise<void> | undefined;
  return {
    address: `${host}:${port}`,
    stop(graceMs) {
      stopping ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      return stopping;
    },
  };
}
