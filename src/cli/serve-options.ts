import { parseArgs } from "node:util";
import { DEFAULT_ADDRESS } from "../client/lock-client.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "../log/logger.ts";

export interface ServeOptions {
  lockDir: string;
  grpcListen: string;
  httpListen: string;
  /** GET /metrics (and the cost of counting); on unless turned off. */
  metrics: boolean;
  /** undefined: text on a terminal, JSON otherwise (decided where stderr is known). */
  logFormat: LogFormat | undefined;
  logLevel: LogLevel;
}

export const SERVE_DEFAULTS = {
  lockDir: "./.mcp-gateway",
  grpcListen: DEFAULT_ADDRESS,
  httpListen: "127.0.0.1:8000",
  metrics: "on",
  logLevel: "info",
};

/** Flags win over environment variables, which win over the defaults. */
export function parseServeOptions(args: string[], env: NodeJS.ProcessEnv): ServeOptions {
  const { values } = parseArgs({
    args,
    options: {
      "lock-dir": { type: "string" },
      "grpc-listen": { type: "string" },
      "http-listen": { type: "string" },
      metrics: { type: "string" },
      "log-format": { type: "string" },
      "log-level": { type: "string" },
    },
    strict: true,
    allowPositionals: false,
  });
  const metrics = oneOf("--metrics", values.metrics ?? env.MCP_LOCKD_METRICS ?? SERVE_DEFAULTS.metrics, ["on", "off"] as const);
  const format = values["log-format"] ?? env.MCP_LOCKD_LOG_FORMAT;
  return {
    lockDir: values["lock-dir"] ?? env.MCP_LOCKD_DIR ?? SERVE_DEFAULTS.lockDir,
    grpcListen: values["grpc-listen"] ?? env.MCP_LOCKD_GRPC_LISTEN ?? SERVE_DEFAULTS.grpcListen,
    httpListen: values["http-listen"] ?? env.MCP_LOCKD_HTTP_LISTEN ?? SERVE_DEFAULTS.httpListen,
    metrics: metrics === "on",
    logFormat: format === undefined || format === "" ? undefined : oneOf("--log-format", format, LOG_FORMATS),
    logLevel: oneOf("--log-level", values["log-level"] || env.MCP_LOCKD_LOG_LEVEL || SERVE_DEFAULTS.logLevel, LOG_LEVELS),
  };
}

function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new Error(`${flag} ${JSON.stringify(value)}: expected one of ${allowed.join(", ")}`);
  }
  return value as T;
}
