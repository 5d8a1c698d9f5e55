import { parseArgs } from "node:util";
import { DEFAULT_ADDRESS } from "../client/lock-client.ts";

export interface ServeOptions {
  lockDir: string;
  grpcListen: string;
  httpListen: string;
}

export const SERVE_DEFAULTS = {
  lockDir: "./.mcp-gateway",
  grpcListen: DEFAULT_ADDRESS,
  httpListen: "127.0.0.1:8000",
};

/** Flags win over environment variables, which win over the defaults. */
export function parseServeOptions(args: string[], env: NodeJS.ProcessEnv): ServeOptions {
  const { values } = parseArgs({
    args,
    options: {
      "lock-dir": { type: "string" },
      "grpc-listen": { type: "string" },
      "http-listen": { type: "string" },
    },
    strict: true,
    allowPositionals: false,
  });
  return {
    lockDir: values["lock-dir"] ?? env.MCP_LOCKD_DIR ?? SERVE_DEFAULTS.lockDir,
    grpcListen: values["grpc-listen"] ?? env.MCP_LOCKD_GRPC_LISTEN ?? SERVE_DEFAULTS.grpcListen,
    httpListen: values["http-listen"] ?? env.MCP_LOCKD_HTTP_LISTEN ?? SERVE_DEFAULTS.httpListen,
  };
}
