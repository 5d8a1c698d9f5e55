import { parseArgs } from "node:util";
import { LockClient } from "../client/index.ts";
import { describeFailure, exitCodeFor } from "./client-failure.ts";
import { CONNECTION_FLAGS, resolveConnection, UsageError, type ClientConnection } from "./client-options.ts";
import type { CommandIo } from "./command-io.ts";
import { EXIT_USAGE } from "./exit-codes.ts";
import { resolveLeaseId } from "./lease-id-input.ts";

// What `release` and `renew` share: they act on a lease id that `acquire`
// printed, with one client call each.

export interface LeaseCommandArgs {
  address: string;
  connection: ClientConnection;
  leaseArgument: string | undefined;
  json: boolean;
}

/** The arguments of `release` and `renew`: one optional lease id (or -), --address, --json where allowed. */
export function parseLeaseCommandArgs(args: string[], env: NodeJS.ProcessEnv, allowJson: boolean): LeaseCommandArgs {
  const { values, positionals } = parseArgs({
    args,
    options: { ...CONNECTION_FLAGS, ...(allowJson ? { json: { type: "boolean" as const, default: false } } : {}) },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length > 1) throw new UsageError("at most one lease id");
  const connection = resolveConnection(values as Parameters<typeof resolveConnection>[0], env);
  return {
    address: connection.address,
    connection,
    leaseArgument: positionals[0],
    json: values.json === true,
  };
}

/**
 * Parses the arguments, finds the lease id, and runs `work` with a client;
 * usage errors exit 64, client failures are said and mapped to exit codes.
 */
export async function runLeaseCommand(
  name: string,
  args: string[],
  io: CommandIo,
  allowJson: boolean,
  work: (client: LockClient, leaseId: string, parsed: LeaseCommandArgs) => Promise<number>,
): Promise<number> {
  let parsed: LeaseCommandArgs;
  let leaseId: string;
  try {
    parsed = parseLeaseCommandArgs(args, io.env, allowJson);
    leaseId = await resolveLeaseId(parsed.leaseArgument, io.env, io.stdin);
  } catch (err) {
    io.stderr(`mcp-lockd ${name}: ${(err as Error).message}\n(mcp-lockd ${name} --help shows the usage)\n`);
    return EXIT_USAGE;
  }
  const client = new LockClient(parsed.connection);
  try {
    return await work(client, leaseId, parsed);
  } catch (err) {
    io.stderr(`mcp-lockd ${name}: ${describeFailure(err, parsed.address)}\n`);
    return exitCodeFor(err);
  } finally {
    client.close();
  }
}
