import { parseArgs } from "node:util";
import { DEFAULT_ADDRESS } from "../client/address-list.ts";
import { DEFAULT_SERVICE_LIMITS, type ServiceLimits } from "../core/service-limits.ts";
import type { TlsFiles, TlsMinVersion } from "../tls/tls-settings.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "../log/logger.ts";
import { EtcdConfigError } from "../store/etcd/etcd-client.ts";
import { DEFAULT_ETCD_PREFIX } from "../store/etcd/etcd-lease-store.ts";
import { checkEtcdStoreSettings, type EtcdStoreSettings } from "../store/etcd/etcd-store-settings.ts";
import { STORE_KINDS, type StoreKind } from "../store/store-kind.ts";
import { FSYNC_MODES, type FsyncMode } from "../store/fsync-placement.ts";

export interface ServeOptions {
  /** The lease files' dir: the file store (the default). Absent with `etcd`. */
  lockDir?: string;
  /** Where the file store's fsyncs run (--fsync); absent with `etcd`. */
  fsync?: FsyncMode;
  /** The etcd store instead (--store etcd). */
  etcd?: EtcdStoreSettings;
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

/** The etcd flags and the variable each falls back to; any of them needs --store etcd. */
const ETCD_FLAGS = {
  "etcd-endpoints": "MCP_LOCKD_ETCD_ENDPOINTS",
  "etcd-prefix": "MCP_LOCKD_ETCD_PREFIX",
  "etcd-cacert": "MCP_LOCKD_ETCD_CACERT",
  "etcd-cert": "MCP_LOCKD_ETCD_CERT",
  "etcd-key": "MCP_LOCKD_ETCD_KEY",
  "etcd-token-floor": "MCP_LOCKD_ETCD_TOKEN_FLOOR",
} as const;

export const SERVE_DEFAULTS = {
  store: "file" as StoreKind,
  lockDir: "./.mcp-gateway",
  fsync: "auto" as FsyncMode,
  etcdPrefix: DEFAULT_ETCD_PREFIX,
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
      store: { type: "string" },
      "lock-dir": { type: "string" },
      fsync: { type: "string" },
      ...Object.fromEntries(Object.keys(ETCD_FLAGS).map((flag) => [flag, { type: "string" as const }])),
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
    ...parseStore(values as Record<string, unknown>, env),
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

/** --store and what goes with it: a lock dir for the file store, endpoints and the rest for etcd. */
function parseStore(values: Record<string, unknown>, env: NodeJS.ProcessEnv): { lockDir: string; fsync: FsyncMode } | { etcd: EtcdStoreSettings } {
  const flag = (name: string) => (typeof values[name] === "string" ? (values[name] as string) : undefined);
  const store = oneOf("--store", flag("store") ?? (env.MCP_LOCKD_STORE || undefined) ?? SERVE_DEFAULTS.store, STORE_KINDS);
  // Each etcd setting, from its flag or else its variable, with where it came from (for messages).
  const etcd = new Map<string, { value: string; from: string }>();
  for (const [name, variable] of Object.entries(ETCD_FLAGS)) {
    const fromFlag = flag(name);
    if (fromFlag !== undefined) etcd.set(name, { value: fromFlag, from: `--${name}` });
    else if (env[variable]) etcd.set(name, { value: env[variable]!, from: variable });
  }
  if (store === "file") {
    const [first] = etcd.values();
    if (first) throw new Error(`${first.from} is for --store etcd; the store is file (--store, MCP_LOCKD_STORE)`);
    return {
      lockDir: flag("lock-dir") ?? env.MCP_LOCKD_DIR ?? SERVE_DEFAULTS.lockDir,
      fsync: oneOf("--fsync", flag("fsync") ?? (env.MCP_LOCKD_FSYNC || undefined) ?? SERVE_DEFAULTS.fsync, FSYNC_MODES),
    };
  }
  // One deployment uses one store: a lock dir beside etcd would be ignored, so it is refused.
  const lockDirFrom = flag("lock-dir") !== undefined ? "--lock-dir" : env.MCP_LOCKD_DIR ? "MCP_LOCKD_DIR" : undefined;
  if (lockDirFrom) throw new Error(`${lockDirFrom} is for --store file; with --store etcd the leases live in etcd, not in a lock dir`);
  const fsyncFrom = flag("fsync") !== undefined ? "--fsync" : env.MCP_LOCKD_FSYNC ? "MCP_LOCKD_FSYNC" : undefined;
  if (fsyncFrom) throw new Error(`${fsyncFrom} is for --store file; etcd makes its own writes durable`);
  const endpoints = etcd.get("etcd-endpoints");
  if (!endpoints) throw new Error("--store etcd needs --etcd-endpoints http://HOST:PORT[,http://HOST:PORT...] (or MCP_LOCKD_ETCD_ENDPOINTS)");
  const floor = etcd.get("etcd-token-floor");
  if (floor && !/^\d+$/.test(floor.value)) throw new Error(`${floor.from} ${JSON.stringify(floor.value)}: expected a whole number of at least 0`);
  const file = (name: string) => etcd.get(name)?.value;
  const settings: EtcdStoreSettings = {
    endpoints: endpoints.value.split(",").map((entry) => entry.trim()),
    prefix: etcd.get("etcd-prefix")?.value ?? SERVE_DEFAULTS.etcdPrefix,
    cacertFile: file("etcd-cacert"),
    certFile: file("etcd-cert"),
    keyFile: file("etcd-key"),
    tokenFloor: floor ? Number(floor.value) : 0,
  };
  try {
    checkEtcdStoreSettings(settings);
  } catch (err) {
    if (err instanceof EtcdConfigError) throw new Error(`--store etcd: ${err.message}`);
    throw err;
  }
  return { etcd: settings };
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
