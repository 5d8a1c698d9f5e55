import { parseArgs } from "node:util";
import { DEFAULT_ADDRESS } from "../client/address-list.ts";
import { DEFAULT_SERVICE_LIMITS, type ServiceLimits } from "../core/service-limits.ts";
import type { TlsFiles, TlsMinVersion } from "../tls/tls-settings.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "../log/logger.ts";

export interface ServeOptions {
  lockDir: string;
  grpcListen: string;
  httpListen: string;
  tls?: TlsFiles;
  authFile?: string;
  insecureListen: boolean;
  limits: ServiceLimits;
  /** GET /metrics (and the cost of counting); on unless turned off. */
  metrics: boolean;
  /** undefined: text on a terminal, JSON otherwise (decided where stderr is known). */
  logFormat: LogFormat | undefined;
  logLevel: LogLevel;
}

/** The --max-* flags and the limit each sets. */
const LIMIT_FLAGS: Record<string, keyof ServiceLimits> = {
  "max-waiters-per-resource": "maxWaitersPerResource",
  "max-waiters": "maxWaiters",
  "max-keepalive-streams": "maxKeepAliveStreams",
  "max-streams-per-connection": "maxStreamsPerConnection",
  "max-connections": "maxConnections",
  "max-leases-per-owner": "maxLeasesPerOwner",
};

export const SERVE_DEFAULTS = {
  lockDir: "./.mcp-gateway",
  grpcListen: DEFAULT_ADDRESS,
  httpListen: "127.0.0.1:8000",
  tlsMinVersion: "1.2" as TlsMinVersion,
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
      "cert-file": { type: "string" },
      "key-file": { type: "string" },
      "trusted-ca-file": { type: "string" },
      "client-cert-auth": { type: "boolean" },
      "tls-min-version": { type: "string" },
      "auth-file": { type: "string" },
      "insecure-listen": { type: "boolean" },
      ...Object.fromEntries(Object.keys(LIMIT_FLAGS).map((flag) => [flag, { type: "string" as const }])),
      metrics: { type: "string" },
      "log-format": { type: "string" },
      "log-level": { type: "string" },
    },
    strict: true,
    allowPositionals: false,
  });
  const certFile = values["cert-file"] ?? (env.MCP_LOCKD_CERT_FILE || undefined);
  const keyFile = values["key-file"] ?? (env.MCP_LOCKD_KEY_FILE || undefined);
  const trustedCaFile = values["trusted-ca-file"] ?? (env.MCP_LOCKD_TRUSTED_CA_FILE || undefined);
  const clientCertAuth = values["client-cert-auth"] ?? envFlag(env.MCP_LOCKD_CLIENT_CERT_AUTH, "MCP_LOCKD_CLIENT_CERT_AUTH");
  const minVersion = values["tls-min-version"] ?? (env.MCP_LOCKD_TLS_MIN_VERSION || undefined) ?? SERVE_DEFAULTS.tlsMinVersion;
  if (minVersion !== "1.2" && minVersion !== "1.3") throw new Error(`--tls-min-version ${JSON.stringify(minVersion)}: expected 1.2 or 1.3`);
  if ((certFile === undefined) !== (keyFile === undefined)) throw new Error("--cert-file and --key-file go together");
  if (certFile === undefined && (trustedCaFile !== undefined || clientCertAuth)) {
    throw new Error("--trusted-ca-file and --client-cert-auth need TLS: give --cert-file and --key-file too");
  }
  if (clientCertAuth && trustedCaFile === undefined) throw new Error("--client-cert-auth needs --trusted-ca-file (the CA that signs client certificates)");
  const authFile = values["auth-file"] ?? (env.MCP_LOCKD_AUTH_FILE || undefined);
  const metrics = oneOf("--metrics", values.metrics ?? env.MCP_LOCKD_METRICS ?? SERVE_DEFAULTS.metrics, ["on", "off"] as const);
  const format = values["log-format"] ?? env.MCP_LOCKD_LOG_FORMAT;
  return {
    lockDir: values["lock-dir"] ?? env.MCP_LOCKD_DIR ?? SERVE_DEFAULTS.lockDir,
    grpcListen: values["grpc-listen"] ?? env.MCP_LOCKD_GRPC_LISTEN ?? SERVE_DEFAULTS.grpcListen,
    httpListen: values["http-listen"] ?? env.MCP_LOCKD_HTTP_LISTEN ?? SERVE_DEFAULTS.httpListen,
    ...(certFile !== undefined && keyFile !== undefined
      ? { tls: { certFile, keyFile, ...(trustedCaFile === undefined ? {} : { trustedCaFile }), clientCertAuth, minVersion } }
      : {}),
    ...(authFile === undefined ? {} : { authFile }),
    insecureListen: values["insecure-listen"] === true,
    limits: parseLimits(values as Record<string, unknown>),
    metrics: metrics === "on",
    logFormat: format === undefined || format === "" ? undefined : oneOf("--log-format", format, LOG_FORMATS),
    logLevel: oneOf("--log-level", values["log-level"] || env.MCP_LOCKD_LOG_LEVEL || SERVE_DEFAULTS.logLevel, LOG_LEVELS),
  };
}

function parseLimits(values: Record<string, unknown>): ServiceLimits {
  const limits = { ...DEFAULT_SERVICE_LIMITS };
  for (const [flag, key] of Object.entries(LIMIT_FLAGS)) {
    const value = values[flag];
    if (typeof value !== "string") continue;
    const number = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(number) || number < 1) throw new Error(`--${flag} ${JSON.stringify(value)}: expected a whole number of at least 1`);
    limits[key] = number;
  }
  return limits;
}

/** "1", "true", "yes" (any case) → true; "", "0", "false", "no" → false; anything else is an error. */
function envFlag(value: string | undefined, name: string): boolean {
  if (value === undefined || /^(|0|false|no)$/i.test(value)) return false;
  if (/^(1|true|yes)$/i.test(value)) return true;
  throw new Error(`${name}=${value}: expected 1, true, yes, 0, false or no`);
}

function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new Error(`${flag} ${JSON.stringify(value)}: expected one of ${allowed.join(", ")}`);
  }
  return value as T;
}
