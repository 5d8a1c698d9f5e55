import type { Server as NetServer } from "node:net";
import type { Server } from "@grpc/grpc-js";

/**
 * Caps the connections the gRPC listeners accept at once: more are closed
 * as they arrive (the client sees UNAVAILABLE and retries later), so a
 * flood of connections cannot exhaust file descriptors or memory. grpc-js
 * has no option for it, so, as in session-stream-limit.ts, this reads its
 * private `http2Servers` map (grpc-js 1.14) after bindAsync. Returns false
 * (and does nothing) if that map is gone.
 */
export function capConnections(server: Server, max: number): boolean {
  const http2Servers = (server as unknown as { http2Servers?: Map<NetServer, unknown> }).http2Servers;
  if (!(http2Servers instanceof Map)) return false;
  for (const listener of http2Servers.keys()) listener.maxConnections = max;
  return true;
}
