import { parseArgs } from "node:util";
import { LockClient, type Lock } from "../client/index.ts";
import { describeFailure, exitCodeFor } from "./client-failure.ts";
import { CONNECTION_FLAGS, defaultHolder, durationOption, resolveConnection, UsageError, DEFAULT_ADDRESS, type ClientConnection } from "./client-options.ts";
import { processIo, type CommandIo } from "./command-io.ts";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, exitCodeForSignal } from "./exit-codes.ts";
import { acquireInterruptibly, catchSignals, INTERRUPT_SIGNALS, InterruptedError } from "./lock-waiting.ts";
import { quoted } from "./display-text.ts";

// `mcp-lockd acquire`: for scripts that manage a lease themselves. It prints
// the lease id on stdout (the one place the CLI ever shows one, because the
// script asked for it: whoever has it can release or renew the lease) and
// exits, leaving the lease held. Nobody renews it: it expires after its ttl
// unless the script runs `mcp-lockd renew` or `mcp-lockd release`.

export const ACQUIRE_USAGE = `Usage:
  mcp-lockd acquire RESOURCE [--ttl D] [--wait D] [--holder NAME] [--json] [--address HOST:PORT[,...]]

Acquires RESOURCE and prints, on stdout, what a script needs to keep:
  MCP_LOCKD_RESOURCE=deploy
  MCP_LOCKD_LEASE_ID=...           the capability to release or renew: keep it out of logs
  MCP_LOCKD_FENCING_TOKEN=42
  MCP_LOCKD_EXPIRES_AT=2026-01-09T14:35:00.000Z
(values never need quoting), or with --json one object with resource, holder,
lease_id, fencing_token, expires_at and ttl (seconds).
The lease is NOT renewed after acquire exits: it expires after --ttl unless
renewed with \`mcp-lockd renew\`; end it with \`mcp-lockd release\`.

  --ttl D       lease time to live, 1s to 1h (default 30s)
  --wait D      how long to wait in line (default: as long as the service
                allows, 24h); 0 tries once and exits 75 if the resource is held
  --holder NAME shown to others (default USER@HOST pid PARENT_PID (mcp-lockd acquire))
  --address     MCP_LOCKD_ADDRESS, else ${DEFAULT_ADDRESS}; several replicas
                separated by commas are tried in order
  --cacert F, --cert F, --key F, --token-file F: TLS and credentials (MCP_LOCKD_CACERT, MCP_LOCKD_CERT, MCP_LOCKD_KEY, MCP_LOCKD_TOKEN_FILE)
Durations: 500ms, 30s, 5m, 1h, 1m30s; a bare number is seconds.

In a script (eval of an empty output would succeed, so test acquire's status first):
  lease=$(mcp-lockd acquire deploy --ttl 10m) || exit
  eval "$lease"; export MCP_LOCKD_LEASE_ID
  ...
  mcp-lockd release            # reads MCP_LOCKD_LEASE_ID
`;

export interface AcquireArgs {
  address: string;
  connection: ClientConnection;
  resource: string;
  ttl: number | undefined;
  wait: number;
  holder: string;
  json: boolean;
}

export function parseAcquireArgs(args: string[], env: NodeJS.ProcessEnv, parentPid = process.ppid): AcquireArgs {
  const { values, positionals } = parseArgs({
    args,
    options: {
      ttl: { type: "string" },
      wait: { type: "string" },
      holder: { type: "string" },
      json: { type: "boolean", default: false },
      ...CONNECTION_FLAGS,
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length === 0 ? "say which resource to acquire" : `one resource only; got ${positionals.map((p) => quoted(p)).join(" ")}`);
  }
  const wait = durationOption(values.wait, "--wait");
  const connection = resolveConnection(values, env);
  return {
    address: connection.address,
    connection,
    resource: positionals[0]!,
    ttl: durationOption(values.ttl, "--ttl"),
    wait: wait ?? Number.POSITIVE_INFINITY,
    holder: values.holder ?? defaultHolder(env, parentPid, "(mcp-lockd acquire)"),
    json: values.json,
  };
}

export async function runAcquireCommand(args: string[], io: CommandIo = processIo): Promise<number> {
  let parsed: AcquireArgs;
  try {
    parsed = parseAcquireArgs(args, io.env);
  } catch (err) {
    io.stderr(`mcp-lockd acquire: ${(err as Error).message}\n(mcp-lockd acquire --help shows the usage)\n`);
    return EXIT_USAGE;
  }
  const client = new LockClient(parsed.connection);
  const interrupt = new AbortController();
  const stopCatching = catchSignals(INTERRUPT_SIGNALS, (signal) => interrupt.abort(new InterruptedError(signal)));
  try {
    const lock = await acquireInterruptibly(
      client,
      parsed.resource,
      { holder: parsed.holder, ttl: parsed.ttl, wait: parsed.wait },
      interrupt.signal,
      io,
      "mcp-lockd acquire",
    );
    try {
      await io.stdout(parsed.json ? acquiredJson(lock) : acquiredLines(lock));
    } catch (err) {
      // Nobody got the lease id, so nobody could ever release it: do it now.
      await lock.release().catch(() => {});
      io.stderr(`mcp-lockd acquire: cannot write the lease to stdout (${(err as Error).message}); released it\n`);
      return EXIT_FAILURE;
    }
    // The lease now belongs to the script: closing the client must not release it.
    lock.detach();
    return EXIT_OK;
  } catch (err) {
    if (err instanceof InterruptedError) {
      io.stderr(`mcp-lockd acquire: ${err.signal} while waiting for ${quoted(parsed.resource)}: left the queue\n`);
      return exitCodeForSignal(err.signal);
    }
    io.stderr(`mcp-lockd acquire: ${describeFailure(err, parsed.address)}\n`);
    return exitCodeFor(err);
  } finally {
    stopCatching();
    // Ends the KeepAlive stream; the lease stays held until its ttl runs out.
    client.close();
  }
}

/** KEY=value lines; every value is from a restricted alphabet, so `eval` needs no quoting. */
function acquiredLines(lock: Lock): string {
  assertShellSafe(lock.leaseId);
  return (
    `MCP_LOCKD_RESOURCE=${lock.resource}\n` +
    `MCP_LOCKD_LEASE_ID=${lock.leaseId}\n` +
    `MCP_LOCKD_FENCING_TOKEN=${lock.fencingToken.toString()}\n` +
    `MCP_LOCKD_EXPIRES_AT=${lock.expiresAt.toISOString()}\n`
  );
}

function acquiredJson(lock: Lock): string {
  return (
    JSON.stringify({
      resource: lock.resource,
      holder: lock.holder,
      lease_id: lock.leaseId,
      // A number, as in `status --json` and GET /health/locks (tokens stay below 2^53).
      fencing_token: Number(lock.fencingToken),
      expires_at: lock.expiresAt.toISOString(),
      ttl: lock.ttl / 1000,
    }) + "\n"
  );
}

/**
 * The output is meant for `eval`: a lease id from a misbehaving server must
 * not be able to inject shell code. (Resource names are checked by the
 * service's pattern; tokens are digits; times are ISO strings.)
 */
function assertShellSafe(leaseId: string): void {
  if (!/^[A-Za-z0-9_-]+$/.test(leaseId)) throw new Error("the service returned a lease id with unexpected characters");
}
