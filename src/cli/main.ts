import { startService } from "../service.ts";
import { ACQUIRE_USAGE, runAcquireCommand } from "./acquire-command.ts";
import { CALL_USAGE, runCallCommand } from "./call-command.ts";
import { DEFAULT_ADDRESS } from "./client-options.ts";
import { EXIT_CODES_HELP, EXIT_USAGE } from "./exit-codes.ts";
import { RELEASE_USAGE, runReleaseCommand } from "./release-command.ts";
import { RENEW_USAGE, runRenewCommand } from "./renew-command.ts";
import { RUN_USAGE, runRunCommand } from "./run-command.ts";
import { parseServeOptions, SERVE_DEFAULTS } from "./serve-options.ts";
import { runStatusCommand, STATUS_USAGE } from "./status-command.ts";
import { VERSION } from "./version.ts";

const HELP = `mcp-lockd ${VERSION}: named locks as leases, with fencing tokens, over gRPC and lease files

Usage:
  mcp-lockd serve [--lock-dir DIR] [--grpc-listen HOST:PORT] [--http-listen HOST:PORT]
  mcp-lockd run RESOURCE [--ttl D] [--wait D] [--holder NAME] [--grace D] -- COMMAND [ARGS...]
  mcp-lockd status [PREFIX] [--json]
  mcp-lockd acquire RESOURCE [--ttl D] [--wait D] [--holder NAME] [--json]
  mcp-lockd renew [LEASE_ID | -] [--json]
  mcp-lockd release [LEASE_ID | -]
  mcp-lockd call [--address HOST:PORT[,...]] list | describe [SYMBOL] | SERVICE/METHOD [JSON]
  mcp-lockd COMMAND --help | mcp-lockd --help | --version

serve options (flag, then environment variable, then default):
  --lock-dir DIR          MCP_LOCKD_DIR          ${SERVE_DEFAULTS.lockDir}
  --grpc-listen HOST:PORT MCP_LOCKD_GRPC_LISTEN  ${SERVE_DEFAULTS.grpcListen}
  --http-listen HOST:PORT MCP_LOCKD_HTTP_LISTEN  ${SERVE_DEFAULTS.httpListen}
  Port 0 picks a free port. Listening beyond loopback must be asked for.

Client commands (run, status, acquire, renew, release) talk to the service at
  --address HOST:PORT     MCP_LOCKD_ADDRESS      ${DEFAULT_ADDRESS}
  or several replicas, --address HOST:PORT,HOST:PORT: calls and renewals move
  to the next when one is down.
run: holds RESOURCE while COMMAND runs (renewing it), passes MCP_LOCKD_RESOURCE,
  MCP_LOCKD_FENCING_TOKEN and MCP_LOCKD_EXPIRES_AT, exits with COMMAND's code;
  if the lease is lost, COMMAND gets SIGTERM, then SIGKILL after --grace (5s).
acquire prints the lease id (a capability: keep it out of logs) for scripts
  that release or renew it themselves; the lease is not renewed after it exits.
Durations: 500ms, 30s, 5m, 1h, 1m30s; a bare number is seconds.
call: a client that learns the API through gRPC reflection (mcp-lockd call --help).
gRPC also serves grpc.health.v1.Health and server reflection (v1, v1alpha).
HTTP: GET /health/locks lists holders; GET /healthz answers liveness.
Lease files: <lock-dir>/<resource>.lock, protocol in docs/protocol.md.

${EXIT_CODES_HELP}`;


/** The client commands, each with its usage and entry point. */
const CLIENT_COMMANDS = new Map<string, { usage: string; run: (args: string[]) => Promise<number> }>([
  ["run", { usage: RUN_USAGE, run: runRunCommand }],
  ["status", { usage: STATUS_USAGE, run: runStatusCommand }],
  ["acquire", { usage: ACQUIRE_USAGE, run: runAcquireCommand }],
  ["renew", { usage: RENEW_USAGE, run: runRenewCommand }],
  ["release", { usage: RELEASE_USAGE, run: runReleaseCommand }],
]);

/** --help among the command's own arguments; for `run`, only before "--" (after it they are COMMAND's). */
function asksForHelp(args: string[]): boolean {
  const end = args.indexOf("--");
  return (end < 0 ? args : args.slice(0, end)).some((arg) => arg === "--help" || arg === "-h");
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
    if (rest.includes("--help") || rest.includes("-h")) {
      process.stdout.write(CALL_USAGE);
      return 0;
    }
    return runCallCommand(rest);
  }
  const client = command === undefined ? undefined : CLIENT_COMMANDS.get(command);
  if (client) {
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
  const log = (message: string) => process.stderr.write(`${new Date().toISOString()} mcp-lockd: ${message}\n`);
  let service;
  try {
    service = await startService({ ...options, log });
  } catch (err) {
    log(`cannot start: ${(err as Error).message}`);
    return 1;
  }
  process.stdout.write(
    `mcp-lockd serving grpc=${service.grpcAddress} http=${service.httpAddress} lock-dir=${service.lockDir}\n`,
  );
  const running = service;
  return new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      log(`${signal}: shutting down; live lease files stay in place`);
      void running.stop().then(() => resolve(0));
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  });
}
