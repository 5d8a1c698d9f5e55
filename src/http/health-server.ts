import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { TLSSocket, type SecureContextOptions } from "node:tls";
import { presentedCredentials, type AccessPolicy, type Principal } from "../auth/access-policy.ts";
import { LockError } from "../core/errors.ts";
import type { LockManager } from "../core/lock-manager.ts";
import type { LockListing } from "../core/lock-listing.ts";
import type { BlockingState } from "../core/lease.ts";
import type { HealthLockEntry } from "./health-lock-entry.ts";
import type { ServiceMetrics } from "../metrics/service-metrics.ts";
import { serveEventStream, StoreHealthFeed } from "./event-stream.ts";
import { WEB_VIEW_HTML } from "./web-view-page.ts";

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

const utf8 = new TextEncoder();

/**
 * One entry of GET /health/locks as the JSON bytes it adds to the answer.
 * Its own small buffer (TextEncoder), not a slice of Buffer's shared 8 KB
 * pool: a cached entry must not keep a whole pool slab alive.
 */
export function encodeHealthEntry(state: BlockingState, waiters: number): Uint8Array {
  return utf8.encode(JSON.stringify(toHealthEntry(state, waiters)));
}

/** Around and between the entries: the answer is what JSON.stringify({locks}) + "\n" gives. */
export const HEALTH_LOCKS_FRAMING = { open: Buffer.from('{"locks":['), separator: Buffer.from(","), close: Buffer.from("]}\n") };

export interface RunningHttpServer {
  address: string;
  /** New certificates for new connections (TLS only; live ones carry on). */
  updateTls(context: SecureContextOptions): void;
  stop(): Promise<void>;
}

export interface HttpServerOptions {
  /** Serves GET /metrics when given. */
  metrics?: ServiceMetrics;
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

/** What the routes share: the manager, the options, and the server's own lifetime. */
interface HttpContext {
  manager: LockManager;
  options: HttpServerOptions;
  /** Aborted by stop(): ends the event streams, which would otherwise hold the server open. */
  stopping: AbortSignal;
  storeHealth: StoreHealthFeed;
  /** GET /health/locks, kept encoded. */
  listing: LockListing;
}

/**
 * The HTTP shim, read-only: GET /health/locks, /healthz, /metrics, and the
 * web view (GET / and its event stream, GET /events).
 */
export async function startHttpServer(manager: LockManager, listen: string, options: HttpServerOptions = {}): Promise<RunningHttpServer> {
  const stopping = new AbortController();
  const context: HttpContext = {
    manager,
    options,
    stopping: stopping.signal,
    storeHealth: new StoreHealthFeed(() => manager.probeWritable()),
    listing: manager.cachedListing(({ state, waiters }) => encodeHealthEntry(state, waiters)),
  };
  const handle = (request: IncomingMessage, response: ServerResponse) => {
    void route(context, request, response).catch((err: Error) =>
      sendJson(response, 503, { error: "store unavailable", detail: err.message }),
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
  let closing: Promise<void> | undefined;
  return {
    address: `${host.includes(":") ? `[${host}]` : host}:${bound.port}`,
    updateTls(context) {
      if (tls) (server as ReturnType<typeof createTlsServer>).setSecureContext(context);
    },
    stop() {
      stopping.abort();
      context.listing.stop();
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

async function route(context: HttpContext, request: IncomingMessage, response: ServerResponse): Promise<void> {
  try {
    await routeAuthorized(context, request, response);
  } catch (err) {
    if (!(err instanceof LockError)) throw err;
    if (err.code === "UNAUTHENTICATED") {
      response.setHeader("www-authenticate", 'Bearer realm="mcp-lockd"');
      return sendJson(response, 401, { error: "unauthenticated", detail: err.message });
    }
    if (err.code === "PERMISSION_DENIED") return sendJson(response, 403, { error: "permission denied", detail: err.message });
    throw err;
  }
}

/**
 * With --auth-file: /healthz and the page itself (GET /, static) stay open;
 * /health/locks needs "read" and lists only what the principal may read;
 * /metrics and /events cover every resource, so they need "read" on all.
 */
async function routeAuthorized(context: HttpContext, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const { manager, options } = context;
  const url = new URL(request.url ?? "/", "http://localhost");
  const path = url.pathname;
  const reading = request.method === "GET" || request.method === "HEAD";
  const policy = options.access?.();
  const principal = (): Principal | undefined => policy?.authenticate(presentedBy(request));
  const readAll = () => {
    const who = principal();
    if (policy && who) policy.requirePrefix(who, "read", "");
  };
  if (path === "/metrics" && options.metrics && reading) {
    readAll();
    const { contentType, body } = await options.metrics.render();
    response.writeHead(200, { "content-type": contentType, "cache-control": "no-store" });
    response.end(request.method === "HEAD" ? undefined : body);
    return;
  }
  if (path === "/" && reading) {
    response.writeHead(200, {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      // Everything the page needs is inline and same-origin.
      "content-security-policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
      "x-content-type-options": "nosniff",
    });
    response.end(request.method === "HEAD" ? undefined : WEB_VIEW_HTML);
    return;
  }
  if (path === "/events" && reading) {
    readAll();
    serveEventStream(manager, context.storeHealth, response, context.stopping);
    return;
  }
  const routes: Record<string, () => Promise<unknown>> = {
    "/health/locks": async () => {
      const who = principal();
      if (policy && who) policy.requireAny(who, "read");
      const readable = policy && who ? (resource: string) => policy.allows(who, "read", resource) : undefined;
      return new JsonText(await context.listing.answer("", readable, HEALTH_LOCKS_FRAMING));
    },
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

/** The Authorization header's bearer token and a verified client certificate's CN. */
function presentedBy(request: IncomingMessage) {
  const socket = request.socket;
  const commonName = socket instanceof TLSSocket && socket.authorized ? socket.getPeerCertificate().subject?.CN : undefined;
  return presentedCredentials(request.headers.authorization, commonName);
}

/** A JSON answer already serialised (with its final newline). */
class JsonText {
  constructor(readonly bytes: Buffer) {}
}

function sendJson(response: ServerResponse, statusCode: number, body: unknown): void {
  if (response.headersSent) return;
  const text = body instanceof JsonText ? body.bytes : JSON.stringify(body) + "\n";
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
