import { parseArgs } from "node:util";
import { StdioServerTransport } from "../mcp/sdk.ts";
import { LockClient } from "../client/index.ts";
import { createLockMcpServer } from "../mcp/lock-mcp-server.ts";
import { PollingLockChangeSource, WatchLockChangeSource } from "../mcp/lock-change-source.ts";
import { CONNECTION_FLAGS, defaultHolder, resolveConnection, UsageError, type ClientConnection } from "./client-options.ts";
import { processIo, type CommandIo } from "./command-io.ts";
import { validateHolder } from "../core/limits.ts";
import { EXIT_OK, EXIT_USAGE } from "./exit-codes.ts";
import { INTERRUPT_SIGNALS, catchSignals } from "./lock-waiting.ts";

// `mcp-lockd mcp`: an MCP server on stdio whose tools take, wait for, list and
// release locks of the service. The session's leases are renewed for as long
// as it lives and released when it ends: stdin closes, the client
// disconnects, or SIGINT/SIGTERM/SIGHUP. A killed process's leases expire
// after their ttl. Stdout carries MCP messages only; diagnostics go to stderr.

export async function runMcpCommand(args: string[], io: CommandIo = processIo): Promise<number> {
  let connection: ClientConnection;
  let holderFlag: string | undefined;
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...CONNECTION_FLAGS, holder: { type: "string" } },
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    connection = resolveConnection(values, io.env);
    holderFlag = values.holder === undefined ? undefined : holderOption(values.holder);
  } catch (err) {
    io.stderr(`mcp-lockd mcp: ${(err as Error).message}\n(mcp-lockd mcp --help shows the usage)\n`);
    return EXIT_USAGE;
  }

  const client = new LockClient(connection);
  const { address } = connection;
  const mcp = createLockMcpServer({
    client,
    address,
    changes: new WatchLockChangeSource(
      (signal) => client.watch("", { signal }),
      new PollingLockChangeSource(() => client.list("")),
    ),
    holder: (clientName) => holderFlag ?? defaultHolder(io.env, process.pid, clientName ? `mcp ${clientName}` : "mcp"),
  });

  let endSession!: (why: string) => void;
  const ended = new Promise<string>((resolve) => (endSession = resolve));
  // Installed before anything can arrive, and kept until the leases are released.
  const stopCatching = catchSignals(INTERRUPT_SIGNALS, (signal) => endSession(signal));
  const stdin = process.stdin;
  const onStdinEnd = () => endSession("stdin closed");
  stdin.once("end", onStdinEnd);
  stdin.once("close", onStdinEnd);
  // The client went away while we wrote (EPIPE): the session is over.
  process.stdout.on("error", () => endSession("stdout closed"));

  const transport = new StdioServerTransport();
  transport.onclose = () => endSession("transport closed");
  try {
    await mcp.server.connect(transport);
    io.stderr(`mcp-lockd mcp: serving MCP on stdio for the service at ${address}\n`);
    const why = await ended;
    io.stderr(`mcp-lockd mcp: session ended (${why}); releasing its locks\n`);
  } finally {
    mcp.locks.markClosing();
    mcp.close();
    // Releases every lease this session holds, and cancels waiting acquires.
    await client[Symbol.asyncDispose]();
    await mcp.server.close().catch(() => {});
    stdin.off("end", onStdinEnd);
    stdin.off("close", onStdinEnd);
    stdin.destroy();
    stopCatching();
  }
  return EXIT_OK;
}

/** --holder, checked now against the service's limits: every lock_acquire would fail on it otherwise. */
function holderOption(holder: string): string {
  try {
    validateHolder(holder);
  } catch (err) {
    throw new UsageError(`--${(err as Error).message}`);
  }
  return holder;
}
