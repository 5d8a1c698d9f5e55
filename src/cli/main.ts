import { startService } from "../service.ts";
import { CALL_USAGE, runCallCommand } from "./call-command.ts";
import { parseServeOptions, SERVE_DEFAULTS } from "./serve-options.ts";
import { VERSION } from "./version.ts";

const HELP = `mcp-lockd ${VERSION}: named locks as leases, with fencing tokens, over gRPC and lease files

Usage:
  mcp-lockd serve [--lock-dir DIR] [--grpc-listen HOST:PORT] [--http-listen HOST:PORT]
  mcp-lockd call [--address HOST:PORT] list | describe [SYMBOL] | SERVICE/METHOD [JSON]
  mcp-lockd --help | --version

serve options (flag, then environment variable, then default):
  --lock-dir DIR          MCP_LOCKD_DIR          ${SERVE_DEFAULTS.lockDir}
  --grpc-listen HOST:PORT MCP_LOCKD_GRPC_LISTEN  ${SERVE_DEFAULTS.grpcListen}
  --http-listen HOST:PORT MCP_LOCKD_HTTP_LISTEN  ${SERVE_DEFAULTS.httpListen}
  Port 0 picks a free port. Listening beyond loopback must be asked for.

call: a client that learns the API through gRPC reflection (mcp-lockd call --help).
gRPC also serves grpc.health.v1.Health and server reflection (v1, v1alpha).
HTTP: GET /health/locks lists holders; GET /healthz answers liveness.
Lease files: <lock-dir>/<resource>.lock, protocol in docs/protocol.md.
`;

export const EXIT_USAGE = 64;

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
