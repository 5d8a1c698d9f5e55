import { Server, ServerCredentials, type ServerInterceptor } from "@grpc/grpc-js";
import type { AccessPolicy } from "../auth/access-policy.ts";
import type { LockManager } from "../core/lock-manager.ts";
import { DEFAULT_SERVICE_LIMITS, MAX_REQUEST_BYTES, type ServiceLimits } from "../core/service-limits.ts";
import { HealthService } from "../gen/grpc/health/v1/health.ts";
import { ServerReflectionService } from "../gen/grpc/reflection/v1/reflection.ts";
import { ServerReflectionService as ServerReflectionAlphaService } from "../gen/grpc/reflection/v1alpha/reflection.ts";
import { LockServiceService } from "../gen/mcplockd/v1/lock.ts";
import { healthService, ServingStatusMonitor } from "./health-service.ts";
import { lockService } from "./lock-service.ts";
import { retireConnectionsAfter } from "./session-stream-limit.ts";
import { capConnections } from "./connection-limit.ts";
import { refusingUndecodable, withTolerantDeserializers } from "./undecodable-request.ts";
import { withPreEncodedResponses } from "./pre-encoded.ts";
import type { ReadinessGate } from "./readiness-gate.ts";
import { embeddedRegistry, ReflectionIndex, reflectionService } from "./reflection-service.ts";

// Server-side HTTP/2 keepalive finds dead peers of long KeepAlive streams
// (grpc-js leaves it effectively off by default). Clients may ping every 10s.
const SERVER_OPTIONS = {
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.http2.min_ping_interval_without_data_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
};

export const LOCK_SERVICE_NAME = "mcplockd.v1.LockService";
export const HEALTH_SERVICE_NAME = "grpc.health.v1.Health";
export const REFLECTION_SERVICE_NAME = "grpc.reflection.v1.ServerReflection";
export const REFLECTION_ALPHA_SERVICE_NAME = "grpc.reflection.v1alpha.ServerReflection";

export interface GrpcServerOptions {
  listen: string;
  /** Aborted when shutdown begins: ends waits, KeepAlive, Watch and reflection streams. */
  shutdown: AbortController;
  /** LockService calls are refused until it opens; health says NOT_SERVING until then. */
  readiness: ReadinessGate;
  log?: (message: string) => void;
  /** TLS (or mutual TLS); plaintext when absent. */
  credentials?: ServerCredentials;
  /** The current access policy; authorization is off while it returns undefined. */
  access?: () => AccessPolicy | undefined;
  limits?: ServiceLimits;
  /** Events a Watch stream may fall behind by before it is ended (default WATCH_QUEUE_LIMIT). */
  watchQueueLimit?: number;
  /** Around every call (metrics). */
  interceptors?: ServerInterceptor[];
}

export interface RunningGrpcServer {
  /** host:port actually bound (the port is real even when 0 was asked for). */
  address: string;
  /** Stops accepting, ends waits and streams, lets unary calls in flight finish. */
  stop(graceMs: number): Promise<void>;
}

/**
 * Binds the gRPC server: LockService, grpc.health.v1.Health, and server
 * reflection (v1 and v1alpha). It can bind before the lock manager has
 * started: the readiness gate holds lock calls back until then.
 */
export async function startGrpcServer(manager: LockManager, options: GrpcServerOptions): Promise<RunningGrpcServer> {
  const { listen, shutdown, readiness } = options;
  const limits = options.limits ?? DEFAULT_SERVICE_LIMITS;
  const server = new Server({
    ...SERVER_OPTIONS,
    // grpc-js checks the size before parsing and answers RESOURCE_EXHAUSTED.
    "grpc.max_receive_message_length": MAX_REQUEST_BYTES,
    "grpc.max_concurrent_streams": limits.maxStreamsPerConnection,
    interceptors: options.interceptors ?? [],
  });
  server.addService(
    withPreEncodedResponses(withTolerantDeserializers(LockServiceService)),
    lockService(manager, shutdown.signal, {
      gate: readiness,
      access: options.access,
      maxKeepAliveStreams: limits.maxKeepAliveStreams,
      watchQueueLimit: options.watchQueueLimit,
    }),
  );

  const healthOptions = {
    services: [LOCK_SERVICE_NAME],
    readiness,
    shutdown: shutdown.signal,
    probeWritable: () => manager.probeWritable(),
    log: options.log,
  };
  server.addService(withTolerantDeserializers(HealthService), refusingUndecodable(healthService(new ServingStatusMonitor(healthOptions), healthOptions)));

  const served = [LOCK_SERVICE_NAME, HEALTH_SERVICE_NAME, REFLECTION_SERVICE_NAME, REFLECTION_ALPHA_SERVICE_NAME];
  const reflection = reflectionService(new ReflectionIndex(embeddedRegistry(), served), shutdown.signal);
  server.addService(withTolerantDeserializers(ServerReflectionService), reflection);
  // The v1alpha messages are field for field the v1 ones: one implementation.
  server.addService(withTolerantDeserializers(ServerReflectionAlphaService), reflection);

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listen, options.credentials ?? ServerCredentials.createInsecure(), (err, boundPort) => (err ? reject(err) : resolve(boundPort))),
  );
  // Deno's node:http2 can crash on a client's GOAWAY after many streams on one
  // connection (see session-stream-limit.ts); 10 held in every run measured.
  if ("Deno" in globalThis) retireConnectionsAfter(server, 10);
  if (!capConnections(server, limits.maxConnections)) options.log?.("cannot cap gRPC connections (grpc-js internals changed): --max-connections has no effect");
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
