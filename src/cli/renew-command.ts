import { LockClient } from "../client/index.ts";
import { describeFailure, exitCodeFor } from "./client-failure.ts";
import { processIo, type CommandIo } from "./command-io.ts";
import { EXIT_OK, EXIT_USAGE } from "./exit-codes.ts";
import { resolveLeaseId } from "./lease-id-input.ts";
import { parseLeaseCommandArgs, type LeaseCommandArgs } from "./release-command.ts";

// `mcp-lockd renew`: extends a lease that `mcp-lockd acquire` printed to now +
// its ttl, once (like one request of etcdctl's `lease keep-alive`). A script
// whose work outlasts the ttl calls it every ttl/3 or so.

export const RENEW_USAGE = `Usage:
  mcp-lockd renew [LEASE_ID | -] [--json] [--address HOST:PORT]

Renews the lease once, to now + its ttl, and prints its new expiry:
  MCP_LOCKD_EXPIRES_AT=2026-01-09T14:35:00.000Z
or with --json {"expires_at": ..., "ttl": seconds}. The lease id is found as
for \`mcp-lockd release\` (MCP_LOCKD_LEASE_ID, stdin with "-", or the argument).
Exit 76 if the lease is no longer live (expired: the lock was lost; or released).
A script renews every ttl/3 or so, for instance:
  while sleep 10; do mcp-lockd renew >/dev/null || break; done &
`;

export async function runRenewCommand(args: string[], io: CommandIo = processIo): Promise<number> {
  let parsed: LeaseCommandArgs;
  let leaseId: string;
  try {
    parsed = parseLeaseCommandArgs(args, io.env, true);
    leaseId = await resolveLeaseId(parsed.leaseArgument, io.env, io.stdin);
  } catch (err) {
    io.stderr(`mcp-lockd renew: ${(err as Error).message}\n(mcp-lockd renew --help shows the usage)\n`);
    return EXIT_USAGE;
  }
  const client = new LockClient({ address: parsed.address });
  try {
    const renewal = await client.renew(leaseId);
    const expiresAt = renewal.expiresAt.toISOString();
    await io.stdout(
      parsed.json ? `${JSON.stringify({ expires_at: expiresAt, ttl: renewal.ttl / 1000 })}\n` : `MCP_LOCKD_EXPIRES_AT=${expiresAt}\n`,
    );
    return EXIT_OK;
  } catch (err) {
    io.stderr(`mcp-lockd renew: ${describeFailure(err, parsed.address)}\n`);
    return exitCodeFor(err);
  } finally {
    client.close();
  }
}
