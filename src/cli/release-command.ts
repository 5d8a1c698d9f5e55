import { parseArgs } from "node:util";
import { LockClient } from "../client/index.ts";
import { describeFailure, exitCodeFor } from "./client-failure.ts";
import { resolveAddress, UsageError } from "./client-options.ts";
import { processIo, type CommandIo } from "./command-io.ts";
import { EXIT_LEASE_LOST, EXIT_OK, EXIT_USAGE } from "./exit-codes.ts";
import { resolveLeaseId } from "./lease-id-input.ts";

// `mcp-lockd release`: ends a lease that `mcp-lockd acquire` printed.

export const RELEASE_USAGE = `Usage:
  mcp-lockd release [LEASE_ID | -] [--address HOST:PORT]

Releases the lease at once and hands the resource to the next waiter.
The lease id comes from MCP_LOCKD_LEASE_ID, or from stdin with "-" (a bare
id, or what \`mcp-lockd acquire\` printed, KEY=value lines or --json), or from
the argument. Prefer the first two: arguments are visible to every user of
the machine in \`ps\`.
Prints nothing on success (exit 0). Exit 76 if the lease was not live:
unknown, expired (the lock was lost before the release) or already released.
`;

export interface LeaseCommandArgs {
  address: string;
  leaseArgument: string | undefined;
  json: boolean;
}

/** The arguments of `release` and `renew`: one optional lease id (or -), --address, --json where allowed. */
export function parseLeaseCommandArgs(args: string[], env: NodeJS.ProcessEnv, allowJson: boolean): LeaseCommandArgs {
  const { values, positionals } = parseArgs({
    args,
    options: { address: { type: "string" }, ...(allowJson ? { json: { type: "boolean" as const, default: false } } : {}) },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length > 1) throw new UsageError("at most one lease id");
  return {
    address: resolveAddress(values.address as string | undefined, env),
    leaseArgument: positionals[0],
    json: values.json === true,
  };
}

export async function runReleaseCommand(args: string[], io: CommandIo = processIo): Promise<number> {
  let parsed: LeaseCommandArgs;
  let leaseId: string;
  try {
    parsed = parseLeaseCommandArgs(args, io.env, false);
    leaseId = await resolveLeaseId(parsed.leaseArgument, io.env, io.stdin);
  } catch (err) {
    io.stderr(`mcp-lockd release: ${(err as Error).message}\n(mcp-lockd release --help shows the usage)\n`);
    return EXIT_USAGE;
  }
  const client = new LockClient({ address: parsed.address });
  try {
    if (await client.release(leaseId)) return EXIT_OK;
    io.stderr("mcp-lockd release: the lease was not live: unknown, expired (the lock was lost) or already released\n");
    return EXIT_LEASE_LOST;
  } catch (err) {
    io.stderr(`mcp-lockd release: ${describeFailure(err, parsed.address)}\n`);
    return exitCodeFor(err);
  } finally {
    client.close();
  }
}
