import { processIo, type CommandIo } from "./command-io.ts";
import { EXIT_LEASE_LOST, EXIT_OK } from "./exit-codes.ts";
import { runLeaseCommand } from "./lease-command.ts";

// `mcp-lockd release`: ends a lease that `mcp-lockd acquire` printed.

export const RELEASE_USAGE = `Usage:
  mcp-lockd release [LEASE_ID | -] [--address HOST:PORT[,...]]

Releases the lease at once and hands the resource to the next waiter.
The lease id comes from MCP_LOCKD_LEASE_ID, or from stdin with "-" (a bare
id, or what \`mcp-lockd acquire\` printed, KEY=value lines or --json), or from
the argument. Prefer the first two: arguments are visible to every user of
the machine in \`ps\`.
Prints nothing on success (exit 0). Exit 76 if the lease was not live:
unknown, expired (the lock was lost before the release) or already released.
`;

export function runReleaseCommand(args: string[], io: CommandIo = processIo): Promise<number> {
  return runLeaseCommand("release", args, io, false, async (client, leaseId) => {
    if (await client.release(leaseId)) return EXIT_OK;
    io.stderr("mcp-lockd release: the lease was not live: unknown, expired (the lock was lost) or already released\n");
    return EXIT_LEASE_LOST;
  });
}
