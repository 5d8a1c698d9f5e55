import { parseArgs } from "node:util";
import { LockClient } from "../client/index.ts";
import { describeFailure, exitCodeFor } from "./client-failure.ts";
import { resolveAddress, UsageError, DEFAULT_ADDRESS } from "./client-options.ts";
import { processIo, type CommandIo } from "./command-io.ts";
import { EXIT_OK, EXIT_USAGE } from "./exit-codes.ts";
import { formatLockTable, lockToJson } from "./lock-table.ts";

// `mcp-lockd status`: who holds what, from ListLocks (lease ids never appear).

export const STATUS_USAGE = `Usage:
  mcp-lockd status [PREFIX] [--json] [--address HOST:PORT[,...]]

Lists the held locks (those whose resource starts with PREFIX, if given):
resource, holder, held for, ttl, expires in, fencing token, waiters. With
--json: {"locks": [...]} with the fields of GET /health/locks (resource,
holder, acquired_at, ttl in seconds, expires_at, fencing_token, waiters,
state, metadata). Locks held through the file protocol alone are listed too.
  --address  MCP_LOCKD_ADDRESS, else ${DEFAULT_ADDRESS}; several replicas
             separated by commas are tried in order
`;

export async function runStatusCommand(args: string[], io: CommandIo = processIo): Promise<number> {
  let address: string;
  let prefix: string;
  let json: boolean;
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { json: { type: "boolean", default: false }, address: { type: "string" } },
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length > 1) throw new UsageError("at most one resource prefix");
    address = resolveAddress(values.address, io.env);
    prefix = positionals[0] ?? "";
    json = values.json;
  } catch (err) {
    io.stderr(`mcp-lockd status: ${(err as Error).message}\n(mcp-lockd status --help shows the usage)\n`);
    return EXIT_USAGE;
  }
  const client = new LockClient({ address });
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
