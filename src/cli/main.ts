// First: it must run before anything starts libuv's thread pool.
import "./thread-pool-size.ts";
import { startService } from "../service.ts";
import { DEFAULT_ADDRESS } from "../client/address-list.ts";
import { EXIT_CODES_HELP, EXIT_USAGE } from "./exit-codes.ts";
import { parseServeOptions, SERVE_DEFAULTS } from "./serve-options.ts";
import { VERSION } from "./version.ts";
import { createLogger } from "../log/logger.ts";

const HELP = `mcp-lockd ${VERSION}: named locks as leases, with fencing tokens, over gRPC and lease files

Usage:
  mcp-lockd serve [--lock-dir DIR | --store etcd --etcd-endpoints URL[,URL...]] [--grpc-listen HOST:PORT]
                  [--http-listen HOST:PORT] [--metrics on|off] [--log-format text|json] [--log-level LEVEL]
                  [TLS, auth and limit options]
  mcp-lockd run RESOURCE [--ttl D] [--wait D] [--holder NAME] [--grace D] -- COMMAND [ARGS...]
  mcp-lockd status [PREFIX] [--json] [--watch]
  mcp-lockd wait RESOURCE --until free|held [--timeout D]
  mcp-lockd acquire RESOURCE [--ttl D] [--wait D] [--holder NAME] [--json]
  mcp-lockd renew [LEASE_ID | -] [--json]
  mcp-lockd release [LEASE_ID | -]
  mcp-lockd release --force RESOURCE --reason TEXT     (operators: frees a stuck lock)
  mcp-lockd mcp [--address HOST:PORT[,...]] [--holder NAME]
  mcp-lockd call [--address HOST:PORT[,...]] list | describe [SYMBOL] | SERVICE/METHOD [JSON]
  mcp-lockd COMMAND --help | mcp-lockd --help | --version

serve options (flag, then environment variable, then default):
  --store file|etcd       MCP_LOCKD_STORE        ${SERVE_DEFAULTS.store}: lease files in --lock-dir; etcd for replicas on several hosts
  --lock-dir DIR          MCP_LOCKD_DIR          ${SERVE_DEFAULTS.lockDir} (--store file only)
  --fsync auto|pool|loop  MCP_LOCKD_FSYNC        ${SERVE_DEFAULTS.fsync}: the file store's fsyncs on the thread pool when writes overlap or the disk is slow (--store file only)
  --store etcd (docs/etcd.md); each etcd option needs it, and --lock-dir goes without it:
  --etcd-endpoints URL,...  MCP_LOCKD_ETCD_ENDPOINTS  etcd members: http://HOST:PORT, or https:// for TLS
  --etcd-prefix P         MCP_LOCKD_ETCD_PREFIX       ${SERVE_DEFAULTS.etcdPrefix} (every key of this deployment)
  --etcd-cacert F         MCP_LOCKD_ETCD_CACERT       CA of etcd's certificate (default: the system's)
  --etcd-cert F  --etcd-key F  (MCP_LOCKD_ETCD_CERT, MCP_LOCKD_ETCD_KEY): client certificate for etcd
  --etcd-token-floor N    MCP_LOCKD_ETCD_TOKEN_FLOOR  0: every fencing token issued is above N
  --grpc-listen HOST:PORT MCP_LOCKD_GRPC_LISTEN  ${SERVE_DEFAULTS.grpcListen}
  --http-listen HOST:PORT MCP_LOCKD_HTTP_LISTEN  ${SERVE_DEFAULTS.httpListen}
  --cert-file F           MCP_LOCKD_CERT_FILE         serve gRPC and HTTP over TLS (with --key-file)
  --key-file F            MCP_LOCKD_KEY_FILE
  --trusted-ca-file F     MCP_LOCKD_TRUSTED_CA_FILE   CA of client certificates
  --client-cert-auth      MCP_LOCKD_CLIENT_CERT_AUTH  mutual TLS: require a client certificate
  --tls-min-version V     MCP_LOCKD_TLS_MIN_VERSION   1.2 (default) or 1.3
  --auth-file F           MCP_LOCKD_AUTH_FILE         principals, tokens, grants (docs/security.md)
  --insecure-listen       serve plaintext on a non-loopback address anyway
  --max-waiters-per-resource N (1000)  --max-waiters N (10000)
  --max-keepalive-streams N (10000)    --max-streams-per-connection N (1000)
  --max-connections N (10000, gRPC)   --max-leases-per-owner N (50000: per principal, else per connection)
                          over a limit, a call gets RESOURCE_EXHAUSTED naming it
  Port 0 picks a free port. A non-loopback address needs TLS or --insecure-listen.
  Certificates and the auth file are re-read when they change, or on SIGHUP.
  --metrics on|off        MCP_LOCKD_METRICS      ${SERVE_DEFAULTS.metrics} (GET /metrics, Prometheus)
  --log-format text|json  MCP_LOCKD_LOG_FORMAT   text on a terminal, else json
  --log-level LEVEL       MCP_LOCKD_LOG_LEVEL    ${SERVE_DEFAULTS.logLevel} (error, warn, info, debug)
  Port 0 picks a free port. Listening beyond loopback must be asked for.

Client commands (run, status, wait, acquire, renew, release, mcp) talk to the service at
  --address HOST:PORT     MCP_LOCKD_ADDRESS      ${DEFAULT_ADDRESS}
  or several replicas, --address HOST:PORT,HOST:PORT: calls and renewals move
  to the next when one is down.
  --cacert F  --cert F  --key F  --token-file F   (MCP_LOCKD_CACERT, MCP_LOCKD_CERT,
      MCP_LOCKD_KEY, MCP_LOCKD_TOKEN_FILE): TLS, a client certificate, a bearer token
run: holds RESOURCE while COMMAND runs (renewing it), passes MCP_LOCKD_RESOURCE,
  MCP_LOCKD_FENCING_TOKEN and MCP_LOCKD_EXPIRES_AT, exits with COMMAND's code;
  if the lease is lost, COMMAND gets SIGTERM, then SIGKILL after --grace (5s).
acquire prints the lease id (a capability: keep it out of logs) for scripts
  that release or renew it themselves; the lease is not renewed after it exits.
Durations: 500ms, 30s, 5m, 1h, 1m30s; a bare number is seconds.
mcp: an MCP server on stdio with lock tools for AI agents (docs/mcp.md).
call: a client that learns the API through gRPC reflection (mcp-lockd call --help).
gRPC also serves grpc.health.v1.Health and server reflection (v1, v1alpha).
HTTP: GET /health/locks lists holders; GET /healthz answers liveness;
  GET /metrics (Prometheus); GET / a live web view of the locks.
Lease files (--store file): <lock-dir>/<resource>.lock, protocol in docs/protocol.md.

${EXIT_CODES_HELP}`;


interface ClientCommand {
  usage: string;
  run: (args: string[]) => Promise<number>;
}

/**
 * The client commands, each loaded when used: `serve` never needs the client
 * library nor the MCP SDK (a large import that only `mcp` needs), and not
 * loading them keeps the service's memory down (docs/performance.md).
 */
const CLIENT_COMMANDS = new Map<string, () => Promise<ClientCommand>>([
  ["run", async () => import("./run-command.ts").then((m) => ({ usage: m.RUN_USAGE, run: m.runRunCommand }))],
  ["status", async () => import("./status-command.ts").then((m) => ({ usage: m.STATUS_USAGE, run: m.runStatusCommand }))],
  ["acquire", async () => import("./acquire-command.ts").then((m) => ({ usage: m.ACQUIRE_USAGE, run: m.runAcquireCommand }))],
  ["renew", async () => import("./renew-command.ts").then((m) => ({ usage: m.RENEW_USAGE, run: m.runRenewCommand }))],
  ["release", async () => import("./release-command.ts").then((m) => ({ usage: m.RELEASE_USAGE, run: m.runReleaseCommand }))],
  ["wait", async () => import("./wait-command.ts").then((m) => ({ usage: m.WAIT_USAGE, run: m.runWaitCommand }))],
  [
    "mcp",
    async () => ({ usage: (await import("./mcp-usage.ts")).MCP_USAGE, run: async (args) => (await import("./mcp-command.ts")).runMcpCommand(args) }),
  ],
]);

/** --help among the command's own arguments; for `run`, only before "--" (after it they are COMMAND's). */
function asksForHelp(args: string[]): boolean {
  const end = args.indexOf("--");
  return (end < 0 ? args : args.slice(0, end)).some((arg) => arg === "--help" || arg === "-h");
}

/**
 * grpc-js passes the target's host as the TLS server name, and Node warns
 * (DEP0123) on each TLS connection to an IP address such as 127.0.0.1:
 * noise on every client command, about a library's choice. Only that one
 * warning is dropped.
 */
function dropServerNameWarning(): void {
  const emit = process.emitWarning;
  process.emitWarning = function (this: unknown, warning: string | Error, ...rest: unknown[]) {
    const code = typeof rest[0] === "object" ? (rest[0] as { code?: string } | null)?.code : rest[1];
    if (code === "DEP0123") return;
    return (emit as (...args: unknown[]) => void).call(process, warning, ...rest);
  } as typeof process.emitWarning;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "--help" || command === "-h" || command === "help") {
    process.stdout.write(HELP);
    return 0;
  }
  if (command === "--version" || command === "-v") {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (command === "call") {
    const { CALL_USAGE, runCallCommand } = await import("./call-command.ts");
    if (rest.includes("--help") || rest.includes("-h")) {
      process.stdout.write(CALL_USAGE);
      return 0;
    }
    return runCallCommand(rest);
  }
  const loadClient = command === undefined ? undefined : CLIENT_COMMANDS.get(command);
  if (loadClient) {
    const client = await loadClient();
    dropServerNameWarning();
    if (asksForHelp(rest)) {
      process.stdout.write(client.usage);
      return 0;
    }
    return client.run(rest);
  }
  if (command !== "serve") {
    process.stderr.write(`mcp-lockd: ${command === undefined ? "a command is needed" : `unknown command "${command}"`}\n\n${HELP}`);
    return EXIT_USAGE;
  }
  let options;
  try {
    options = parseServeOptions(rest, process.env);
  } catch (err) {
    process.stderr.write(`mcp-lockd serve: ${(err as Error).message}\n`);
    return EXIT_USAGE;
  }
  return serve(options);
}

async function serve(options: ReturnType<typeof parseServeOptions>): Promise<number> {
  const logger = createLogger({ format: options.logFormat ?? (process.stderr.isTTY ? "text" : "json"), level: options.logLevel });
  const log = (message: string) => logger.info(message);
  let service;
  try {
    service = await startService({ ...options, logger });
  } catch (err) {
    logger.error(`cannot start: ${(err as Error).message}`);
    return 1;
  }
  const where = service.lockDir === undefined ? { store: service.store, location: service.location } : { lock_dir: service.lockDir };
  logger.info("serving", { grpc: service.grpcAddress, http: service.httpAddress, ...where, version: VERSION });
  process.stdout.write(
    `mcp-lockd serving grpc=${service.grpcAddress} http=${service.httpAddress} ` +
      (service.lockDir === undefined ? `store=${service.store}\n` : `lock-dir=${service.lockDir}\n`),
  );
  const running = service;
  return new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      log(`${signal}: shutting down; live ${service.store === "file" ? "lease files stay in place" : "leases stay in etcd"}`);
      void running.stop().then(() => resolve(0));
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
    process.on("SIGHUP", () => {
      log("SIGHUP: re-reading the certificates and the auth file");
      void running.reload();
    });
  });
}
