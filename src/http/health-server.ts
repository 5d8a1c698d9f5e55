import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { TLSSocket, type SecureContextOptions } from "node:tls";
import { presentedCredentials, type AccessPolicy, type PresentedCredentials } from "../auth/access-policy.ts";
import { LockError } from "../core/errors.ts";
import type { LockManager } from "../core/lock-manager.ts";
import type { BlockingState } from "../core/lease.ts";
import type { HealthLockEntry } from "./health-lock-entry.ts";

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
  /** New certificates for new connections (TLS only; live ones carry on). */
  updateTls(context: SecureContextOptions): void;
  stop(): Promise<void>;
}

export interface HttpServerOptions {
  /** Serve HTTPS with these settings; mutual TLS when requireClientCertificate. */
  tls?: { context: SecureContextOptions; requireClientCertificate: boolean };
  /** The current access policy; authorization is off while it returns undefined. */
  access?: () => AccessPolicy | undefined;
  limits?: HttpLimits;
}

/** Bounds against slow or many clients (slowloris): nothing else waits for them. */
export interface HttpLimits {
  /** The request's headers must arrive within this. */
  headersTimeoutMs: number;
  /** The whole request must arrive within this. */
  requestTimeoutMs: number;
  /** Connections open at once; more are closed on arrival. */
  maxConnections: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = { headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, maxConnections: 1_000 };

/** The HTTP shim: GET /health/locks and GET /healthz, read-only. */
export async function startHttpServer(manager: LockManager, listen: string, options: HttpServerOptions = {}): Promise<RunningHttpServer> {
  const handle = (request: IncomingMessage, response: ServerResponse) => {
    void route(manager, request, response, options.access).catch((err: Error) =>
      sendJson(response, 503, { error: "lock dir unavailable", detail: err.message }),
    );
  };
  const { tls } = options;
  const limits = options.limits ?? DEFAULT_HTTP_LIMITS;
  // Node checks the timeouts every 30 s by default: slow clients would linger that much longer.
  const checking = { connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs) };
  const server: Server = tls
    ? createTlsServer({ ...tls.context, ...checking, requestCert: tls.requireClientCertificate, rejectUnauthorized: tls.requireClientCertificate }, handle)
    : createServer(checking, handle);
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.maxConnections = limits.maxConnections;
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
    updateTls(context) {
      if (tls) (server as ReturnType<typeof createTlsServer>).setSecureContext(context);
    },
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      return stopping;
    },
  };
}

async function route(
  manager: LockManager,
  request: IncomingMessage,
  response: ServerResponse,
  access: (() => AccessPolicy | undefined) | undefined,
): Promise<void> {
  const path = new URL(request.url ?? "/", "http://localhost").pathname;
  // /healthz stays open: liveness probes carry no credentials.
  const routes: Record<string, () => Promise<unknown>> = {
    "/health/locks": async () => {
      const policy = access?.();
      const principal = policy?.authenticate(presentedBy(request));
      if (policy && principal) policy.requireAny(principal, "read");
      const locks = await manager.list();
      const readable = policy && principal ? locks.filter(({ state }) => policy.allows(principal, "read", state.resource)) : locks;
      return { locks: readable.map(({ state, waiters }) => toHealthEntry(state, waiters)) };
    },
    "/healthz": async () => ({ status: "ok" }),
  };
  const handler = routes[path];
  if (!handler) return sendJson(response, 404, { error: "not found", path });
  if (request.method !== "GET" && request.method !== "HEAD") {
    response.setHeader("allow", "GET, HEAD");
    return sendJson(response, 405, { error: "method not allowed", method: request.method, allow: ["GET", "HEAD"] });
  }
  let body: unknown;
  try {
    body = await handler();
  } catch (err) {
    if (err instanceof LockError && err.code === "UNAUTHENTICATED") {
      response.setHeader("www-authenticate", 'Bearer realm="mcp-lockd"');
      return sendJson(response, 401, { error: "unauthenticated", detail: err.message });
    }
    if (err instanceof LockError && err.code === "PERMISSION_DENIED") return sendJson(response, 403, { error: "permission denied", detail: err.message });
    throw err;
  }
  sendJson(response, 200, body);
}

/** The Authorization header's bearer token and a verified client certificate's CN. */
function presentedBy(request: IncomingMessage): PresentedCredentials {
  const socket = request.socket;
  const commonName = socket instanceof TLSSocket && socket.authorized ? socket.getPeerCertificate().subject?.CN : undefined;
  return presentedCredentials(request.headers.authorization, commonName);
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
