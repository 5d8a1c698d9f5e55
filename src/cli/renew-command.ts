import { processIo, type CommandIo } from "./command-io.ts";
import { EXIT_OK } from "./exit-codes.ts";
import { runLeaseCommand } from "./lease-command.ts";

// `mcp-lockd renew`: extends a lease that `mcp-lockd acquire` printed to now +
// its ttl, once (like one request of etcdctl's `lease keep-alive`). A script
// whose work outlasts the ttl calls it every ttl/3 or so.

export const RENEW_USAGE = `Usage:
  mcp-lockd renew [LEASE_ID | -] [--json] [--address HOST:PORT[,...]]

Renews the lease once, to now + its ttl, and prints its new expiry:
  MCP_LOCKD_EXPIRES_AT=2026-01-09T14:35:00.000Z
or with --json {"expires_at": ..., "ttl": seconds}. The lease id is found as
for \`mcp-lockd release\` (MCP_LOCKD_LEASE_ID, stdin with "-", or the argument).
Exit 76 if the lease is no longer live (expired: the lock was lost; or released).
A script renews every ttl/3 or so, for instance:
  while sleep 10; do mcp-lockd renew >/dev/null || break; done &
`;

export function runRenewCommand(args: string[], io: CommandIo = processIo): Promise<number> {
  return runLeaseCommand("renew", args, io, true, async (client, leaseId, parsed) => {
    const renewal = await client.renew(leaseId);
    const expiresAt = renewal.expiresAt.toISOString();
    await io.stdout(
      parsed.json ? `${JSON.stringify({ expires_at: expiresAt, ttl: renewal.ttl / 1000 })}\n` : `MCP_LOCKD_EXPIRES_AT=${expiresAt}\n`,
    );
    return EXIT_OK;
  });
}
