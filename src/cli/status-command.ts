import { parseArgs } from "node:util";
import { LockClient } from "../client/index.ts";
import { describeFailure, exitCodeFor } from "./client-failure.ts";
import { CONNECTION_FLAGS, CONNECTION_USAGE, resolveConnection, UsageError, type ClientConnection } from "./client-options.ts";
import { processIo, type CommandIo } from "./command-io.ts";
import { EXIT_OK, EXIT_USAGE } from "./exit-codes.ts";
import { formatLockTable, lockToJson } from "./lock-table.ts";
import { watchStatus } from "./status-watch.ts";

// `mcp-lockd status`: who holds what, from ListLocks (lease ids never appear).

export const STATUS_USAGE = `Usage:
  mcp-lockd status [PREFIX] [--json] [--address HOST:PORT[,...]]
  mcp-lockd status [PREFIX] --watch [--json] [--address HOST:PORT[,...]]

Lists the held locks (those whose resource starts with PREFIX, if given):
resource, holder, held for, ttl, expires in, fencing token, waiters. With
--json: {"locks": [...]} with the fields of GET /health/locks (resource,
holder, acquired_at, ttl in seconds, expires_at, fencing_token, waiters,
state, metadata). Locks held through the file protocol alone are listed too.
--watch follows the locks live (the Watch RPC): on a terminal, a table that
updates as locks change, with a countdown and the recent events; otherwise
(or with --json) one JSON event per line: {"type", "resource", "state",
"holder", "fencing_token", "acquired_at", "expires_at", "ttl", "waiters",
"time"}, first a HELD line per held lock and a SNAPSHOT_COMPLETE line, then
ACQUIRED, RELEASED, EXPIRED, HANDED_OVER, WAITERS_CHANGED, RENEWED... It
re-opens the watch (with a fresh snapshot) if the service restarts. Ctrl-C ends it.
${CONNECTION_USAGE}`;

export async function runStatusCommand(args: string[], io: CommandIo = processIo): Promise<number> {
  let connection: ClientConnection;
  let prefix: string;
  let json: boolean;
  let watch: boolean;
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { json: { type: "boolean", default: false }, watch: { type: "boolean", default: false }, ...CONNECTION_FLAGS },
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length > 1) throw new UsageError("at most one resource prefix");
    connection = resolveConnection(values, io.env);
    prefix = positionals[0] ?? "";
    json = values.json;
    watch = values.watch;
  } catch (err) {
    io.stderr(`mcp-lockd status: ${(err as Error).message}\n(mcp-lockd status --help shows the usage)\n`);
    return EXIT_USAGE;
  }
  const { address } = connection;
  if (watch) return watchStatus({ address, security: connection, prefix, json, io });
  const client = new LockClient(connection);
  try {
    const locks = await client.list(prefix);
    await io.stdout(json ? `${JSON.stringify({ locks: locks.map(lockToJson) }, null, 2)}\n` : formatLockTable(locks, Date.now()));
    return EXIT_OK;
  } catch (err) {
    io.stderr(`mcp-lockd status: ${describeFailure(err, address)}\n`);
    return exitCodeFor(err);
  } finally {
    client.close();
  }
}
