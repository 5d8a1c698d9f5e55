import { Buffer } from "node:buffer";
import { constants, type Http2Server, type ServerHttp2Session } from "node:http2";
import type { Server } from "@grpc/grpc-js";

/**
 * Deno's node:http2 (2.9.x) can abort the whole process inside nghttp2
 * (`find_stream_on_goaway_func: Assertion 'stream->closed_next == NULL'`,
 * `free(): invalid pointer`, or a SIGSEGV) when it receives a client's GOAWAY
 * on a connection that has carried many streams (denoland/deno#36788). A
 * GOAWAY that the server sends itself did not trigger it in any run measured.
 * So under Deno the server retires each connection after `limit` streams, the
 * way grpc-js retires connections for grpc.max_connection_age_ms: a GOAWAY
 * that still lets every open stream finish, then close once they have;
 * clients open a new connection for new calls.
 *
 * grpc-js has no per-connection call limit and does not expose its sessions,
 * so this reads its private `http2Servers` map (grpc-js 1.14), filled by
 * bindAsync: call it after binding. It does nothing if that map is gone.
 */
export function retireConnectionsAfter(server: Server, limit: number): void {
  const http2Servers = (server as unknown as { http2Servers?: Map<Http2Server, unknown> }).http2Servers;
  if (!(http2Servers instanceof Map)) return;
  for (const http2Server of http2Servers.keys()) {
    http2Server.on("session", (session: ServerHttp2Session) => {
      let streams = 0;
      session.on("stream", () => {
        if (++streams !== limit) return;
        try {
          session.goaway(constants.NGHTTP2_NO_ERROR, 2 ** 31 - 1, Buffer.from("max_streams"));
          session.close();
        } catch {
          // already closing
        }
      });
    });
  }
}
