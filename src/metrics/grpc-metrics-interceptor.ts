import { performance } from "node:perf_hooks";
import { ServerInterceptingCall, status, type ServerInterceptor } from "@grpc/grpc-js";
import type { AcquireRequest, KeepAliveResponse } from "../gen/mcplockd/v1/lock.ts";
import type { CounterSeries } from "./hot-metrics.ts";
import type { ServiceMetrics } from "./service-metrics.ts";

// One server interceptor records the gRPC server metrics of every service
// (as etcd names them) and, for LockService, the lock call outcomes: the
// service code stays free of metrics.

/** Code names as go-grpc-prometheus (and so etcd's dashboards) spell them. */
const CODE_NAMES: Record<number, string> = {
  [status.OK]: "OK",
  [status.CANCELLED]: "Canceled",
  [status.UNKNOWN]: "Unknown",
  [status.INVALID_ARGUMENT]: "InvalidArgument",
  [status.DEADLINE_EXCEEDED]: "DeadlineExceeded",
  [status.NOT_FOUND]: "NotFound",
  [status.ALREADY_EXISTS]: "AlreadyExists",
  [status.PERMISSION_DENIED]: "PermissionDenied",
  [status.RESOURCE_EXHAUSTED]: "ResourceExhausted",
  [status.FAILED_PRECONDITION]: "FailedPrecondition",
  [status.ABORTED]: "Aborted",
  [status.OUT_OF_RANGE]: "OutOfRange",
  [status.UNIMPLEMENTED]: "Unimplemented",
  [status.INTERNAL]: "Internal",
  [status.UNAVAILABLE]: "Unavailable",
  [status.DATA_LOSS]: "DataLoss",
  [status.UNAUTHENTICATED]: "Unauthenticated",
};

const ACQUIRE_RESULTS: Record<number, string> = {
  [status.OK]: "granted",
  [status.ABORTED]: "busy",
  [status.CANCELLED]: "cancelled",
  [status.DEADLINE_EXCEEDED]: "deadline",
  [status.INVALID_ARGUMENT]: "invalid",
  [status.UNAVAILABLE]: "unavailable",
};
const RELEASE_RESULTS: Record<number, string> = {
  [status.OK]: "released",
  [status.NOT_FOUND]: "not_found",
  [status.INVALID_ARGUMENT]: "invalid",
  [status.UNAVAILABLE]: "unavailable",
};

const LOCK_SERVICE = "mcplockd.v1.LockService";

/** Told of every call that ends with a status other than OK (for logs). */
export type RejectedCallListener = (method: string, code: number, codeName: string, details: string) => void;

export function grpcMetricsInterceptor(metrics: ServiceMetrics, onRejected?: RejectedCallListener): ServerInterceptor {
  // Label children per method, made once: the hot path does no label hashing.
  const perMethod = new Map<string, ReturnType<typeof methodMetrics>>();
  const methodMetrics = (path: string, type: string) => {
    const [service = "", method = ""] = path.slice(1).split("/");
    const labels = { grpc_type: type, grpc_service: service, grpc_method: method };
    return {
      service,
      method,
      labels,
      started: metrics.grpcStarted.for(labels),
      received: metrics.grpcReceived.for(labels),
      sent: metrics.grpcSent.for(labels),
      /** By status code. */
      handled: new Map<number, CounterSeries>(),
    };
  };
  const renewed = metrics.keepAliveTotal.for({ result: "renewed" });
  const expired = metrics.keepAliveTotal.for({ result: "expired" });
  const keepAliveError = metrics.keepAliveTotal.for({ result: "error" });
  const acquires = new Map<string, CounterSeries>();
  const acquireWaits = { try: metrics.acquireWaitSeconds.for({ mode: "try" }), wait: metrics.acquireWaitSeconds.for({ mode: "wait" }) };
  const releases = new Map<string, CounterSeries>();
  const cached = <K>(map: Map<K, CounterSeries>, key: K, make: () => CounterSeries) => {
    let series = map.get(key);
    if (series === undefined) map.set(key, (series = make()));
    return series;
  };

  return (descriptor, call) => {
    const type = descriptor.requestStream
      ? descriptor.responseStream ? "bidi_stream" : "client_stream"
      : descriptor.responseStream ? "server_stream" : "unary";
    let m = perMethod.get(descriptor.path);
    if (m === undefined) perMethod.set(descriptor.path, (m = methodMetrics(descriptor.path, type)));
    const { service, method, labels, handled } = m;
    const lockCall = service === LOCK_SERVICE;
    const keepAlive = lockCall && method === "KeepAlive";
    const startedAt = performance.now();
    let firstRequest: unknown;
    let finished = false;
    m.started.inc();
    if (keepAlive) metrics.keepAliveStreams.inc();

    const finish = (code: number, details: string) => {
      if (finished) return;
      finished = true;
      const codeName = CODE_NAMES[code] ?? String(code);
      cached(handled, code, () => metrics.grpcHandled.for({ ...labels, grpc_code: codeName })).inc();
      if (keepAlive) {
        metrics.keepAliveStreams.dec();
        if (code !== status.OK && code !== status.CANCELLED) keepAliveError.inc();
      } else if (lockCall && method === "Acquire") {
        const waitTimeout = (firstRequest as AcquireRequest | undefined)?.waitTimeout;
        const mode = waitTimeout !== undefined && (waitTimeout.seconds > 0 || waitTimeout.nanos > 0) ? "wait" : "try";
        const result = ACQUIRE_RESULTS[code] ?? "error";
        cached(acquires, `${mode} ${result}`, () => metrics.acquireTotal.for({ mode, result })).inc();
        acquireWaits[mode].observe((performance.now() - startedAt) / 1000);
      } else if (lockCall && method === "Release") {
        const result = RELEASE_RESULTS[code] ?? "error";
        cached(releases, result, () => metrics.releaseTotal.for({ result })).inc();
      }
      if (code !== status.OK) onRejected?.(`${service}/${method}`, code, codeName, details);
    };

    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMessage(message, nextMessage) {
            m.received.inc();
            firstRequest ??= message;
            nextMessage(message);
          },
          onCancel() {
            finish(status.CANCELLED, "cancelled by the client");
          },
        });
      },
      sendMessage(message, next) {
        m.sent.inc();
        if (keepAlive) ((message as KeepAliveResponse).expired ? expired : renewed).inc();
        next(message);
      },
      sendStatus(sent, next) {
        finish(sent.code, sent.details ?? "");
        next(sent);
      },
    });
  };
}
