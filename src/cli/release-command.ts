import { parseArgs } from "node:util";
import { LockClient } from "../client/index.ts";
import { describeFailure, exitCodeFor } from "./client-failure.ts";
import { CONNECTION_FLAGS, CONNECTION_USAGE, resolveConnection, UsageError, type ClientConnection } from "./client-options.ts";
import { processIo, type CommandIo } from "./command-io.ts";
import { quoted } from "./display-text.ts";
import { EXIT_LEASE_LOST, EXIT_OK, EXIT_USAGE } from "./exit-codes.ts";
import { runLeaseCommand } from "./lease-command.ts";

// `mcp-lockd release`: ends a lease that `mcp-lockd acquire` printed; with
// --force, an operator frees a resource whoever holds it.

export const RELEASE_USAGE = `Usage:
  mcp-lockd release [LEASE_ID | -] [--address HOST:PORT[,...]]
  mcp-lockd release --force RESOURCE --reason TEXT [--address HOST:PORT[,...]]

Releases the lease at once and hands the resource to the next waiter.
The lease id comes from MCP_LOCKD_LEASE_ID, or from stdin with "-" (a bare
id, or what \`mcp-lockd acquire\` printed, KEY=value lines or --json), or from
the argument. Prefer the first two: arguments are visible to every user of
the machine in \`ps\`.
Prints nothing on success (exit 0). Exit 76 if the lease was not live:
unknown, expired (the lock was lost before the release) or already released.

--force RESOURCE --reason TEXT: for operators, frees RESOURCE whoever holds
it (a stuck holder, a lease taken through the file protocol). The holder's
next renewal finds its lease gone (\`mcp-lockd run\` stops its command); the
next waiter is granted with a higher fencing token. The service logs who did
it, the holder and the reason. Needs the "admin" action on --auth-file
services (exit 77 otherwise). Prints what was removed; exit 0 also when the
resource was free.

${CONNECTION_USAGE}`;

export function runReleaseCommand(args: string[], io: CommandIo = processIo): Promise<number> {
  if (args.includes("--force")) return runForceRelease(args, io);
  return runLeaseCommand("release", args, io, false, async (client, leaseId) => {
    if (await client.release(leaseId)) return EXIT_OK;
    io.stderr("mcp-lockd release: the lease was not live: unknown, expired (the lock was lost) or already released\n");
    return EXIT_LEASE_LOST;
  });
}

async function runForceRelease(args: string[], io: CommandIo): Promise<number> {
  let connection: ClientConnection;
  let resource: string;
  let reason: string;
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { force: { type: "boolean" }, reason: { type: "string" }, ...CONNECTION_FLAGS },
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length !== 1) throw new UsageError("--force takes one RESOURCE");
    if (values.reason === undefined || values.reason.trim() === "") throw new UsageError("--force needs --reason TEXT: it is logged with the release");
    connection = resolveConnection(values, io.env);
    resource = positionals[0]!;
    reason = values.reason;
  } catch (err) {
    io.stderr(`mcp-lockd release: ${(err as Error).message}\n(mcp-lockd release --help shows the usage)\n`);
    return EXIT_USAGE;
  }
  const client = new LockClient(connection);
  try {
    const { released, fencingToken } = await client.forceRelease(resource, reason);
    if (released) await io.stdout(`released ${quoted(resource)}${fencingToken > 0n ? ` (fencing token ${fencingToken})` : " (an unreadable lease file)"}\n`);
    else io.stderr(`mcp-lockd release: ${quoted(resource)} was not held\n`);
    return EXIT_OK;
  } catch (err) {
    io.stderr(`mcp-lockd release: ${describeFailure(err, connection.address)}\n`);
    return exitCodeFor(err);
  } finally {
    client.close();
  }
}
