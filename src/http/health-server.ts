import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { LockManager } from "../core/lock-manager.ts";
import type { BlockingState } from "../core/lease.ts";
import type { HealthLockEntry } from "./health-lock-entry.ts";
import type { ServiceMetrics } from "../metrics/service-metrics.ts";

export type { HealthLockEntry };

export function toHealthEntry(state: BlockingState, waiters: number): HealthLockEntry {
  if (state.kind === "held") {
    const { lease } = state;
    return {
      resource: lease.resource,
      holder: lease.holder,
      acquired_at: new Date(lease.acquiredAt).toISOString(),
      ttl: lease.ttlMs / 1000,
      expires_at: new Date(lease.expiresAt).toISOString(),
      fencing_token: lease.fencingToken,
      waiters,
      state: "held",
      metadata: lease.metadata,
    };
  }
  return {
    resource: state.resource,
    holder: "unknown",
    acquired_at: new Date(state.modifiedAt).toISOString(),
    ttl: (state.blockedUntil - state.modifiedAt) / 1000,
    expires_at: new Date(state.blockedUntil).toISOString(),
    fencing_token: null,
    waiters,
    state: "unreadable",
    metadata: { unreadable_reason: state.reason },
  };
}

export interface RunningHttpServer {
  address: string;
  stop(): Promise<void>;
}

export interface HttpServerOptions {
  /** Serves GET /metrics when given. */
  metrics?: ServiceMetrics;
}

/** The HTTP shim: GET /health/locks, GET /healthz and GET /metrics, read-only. */
export async function startHttpServer(manager: LockManager, listen: string, options: HttpServerOptions = {}): Promise<RunningHttpServer> {
  const server = createServer((request, response) => {
    void route(manager, request, response, options).catch((err: Error) =>
      sendJson(response, 503, { error: "lock dir unavailable", detail: err.message }),
    );
  });
  const { host, port } = splitHostPort(listen);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  let stopping: Promise<void> | undefined;
  return {
    address: `${host.includes(":") ? `[${host}]` : host}:${bound.port}`,
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      return stopping;
    },
  };
}

async function route(manager: LockManager, request: IncomingMessage, response: ServerResponse, options: HttpServerOptions): Promise<void> {
  const path = new URL(request.url ?? "/", "http://localhost").pathname;
  if (path === "/metrics" && options.metrics && (request.method === "GET" || request.method === "HEAD")) {
    const { contentType, body } = await options.metrics.render();
    response.writeHead(200, { "content-type": contentType, "cache-control": "no-store" });
    response.end(request.method === "HEAD" ? undefined : body);
    return;
  }
  const routes: Record<string, () => Promise<unknown>> = {
    "/health/locks": async () => ({
      locks: (await manager.list()).map(({ state, waiters }) => toHealthEntry(state, waiters)),
    }),
    "/healthz": async () => ({ status: "ok" }),
  };
  const handler = routes[path];
  if (!handler) return sendJson(response, 404, { error: "not found", path });
  if (request.method !== "GET" && request.method !== "HEAD") {
    response.setHeader("allow", "GET, HEAD");
    return sendJson(response, 405, { error: "method not allowed", method: request.method, allow: ["GET", "HEAD"] });
  }
  sendJson(response, 200, await handler());
}

function sendJson(response: ServerResponse, statusCode: number, body: unknown): void {
  if (response.headersSent) return;
  const text = JSON.stringify(body) + "\n";
  response.writeHead(statusCode, { "content-type": "application/json", "cache-control": "no-store" });
  response.end(text);
}

/** "127.0.0.1:8000", "[::1]:8000", "localhost:0". */
export function splitHostPort(listen: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new Error(`listen address ${JSON.stringify(listen)} must be host:port`);
  return { host: match[1] ?? match[2] ?? "", port };
}
