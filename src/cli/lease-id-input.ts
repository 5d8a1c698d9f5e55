import { UsageError } from "./client-options.ts";
import { MAX_LEASE_ID_LENGTH } from "../core/limits.ts";

// Where `release` and `renew` find the lease id: the argument, else
// MCP_LOCKD_LEASE_ID, or stdin when the argument is "-". Arguments are
// visible to every user of the machine in `ps` and /proc/PID/cmdline; the
// environment and stdin are not, so scripts should prefer those.
//
// Stdin may hold the bare id or what `mcp-lockd acquire` printed (its
// KEY=value lines, or its --json object), so that
// `mcp-lockd acquire res > lease.env` ... `mcp-lockd release - < lease.env` works.

// Lease ids are base64url (256 random bits make 43 characters); the service
// refuses anything longer than 128.
const LEASE_ID = new RegExp(`^[A-Za-z0-9_-]{1,${MAX_LEASE_ID_LENGTH}}$`);
const MAX_STDIN_BYTES = 64 * 1024;

export async function resolveLeaseId(
  argument: string | undefined,
  env: NodeJS.ProcessEnv,
  stdin: NodeJS.ReadableStream,
): Promise<string> {
  if (argument === "-") return parseLeaseIdText(await readAll(stdin), "stdin");
  if (argument !== undefined) return checked(argument, "the argument");
  const fromEnv = env.MCP_LOCKD_LEASE_ID;
  if (fromEnv !== undefined && fromEnv !== "") return checked(fromEnv.trim(), "MCP_LOCKD_LEASE_ID");
  throw new UsageError("no lease id: pass it in MCP_LOCKD_LEASE_ID, on stdin with -, or as an argument");
}

/** The lease id in `text`: a bare id, KEY=value lines with MCP_LOCKD_LEASE_ID, or JSON with lease_id. */
export function parseLeaseIdText(text: string, source: string): string {
  const trimmed = text.trim();
  if (trimmed.startsWith("{")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new UsageError(`${source}: looks like JSON but does not parse`);
    }
    const id = (parsed as { lease_id?: unknown }).lease_id;
    if (typeof id !== "string") throw new UsageError(`${source}: the JSON has no "lease_id" string`);
    return checked(id, source);
  }
  if (trimmed.includes("=")) {
    for (const line of trimmed.split(/\r?\n/)) {
      const match = /^\s*(?:export\s+)?MCP_LOCKD_LEASE_ID=(['"]?)([^'"\s]*)\1\s*$/.exec(line);
      if (match) return checked(match[2]!, source);
    }
    throw new UsageError(`${source}: no MCP_LOCKD_LEASE_ID=... line`);
  }
  return checked(trimmed, source);
}

function checked(id: string, source: string): string {
  // Never echo a malformed value: it may be a real lease id with a stray character.
  if (!LEASE_ID.test(id)) throw new UsageError(`${source} is not a lease id (expected up to 128 characters of A-Z a-z 0-9 _ -)`);
  return id;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = "";
  for await (const chunk of stream) {
    text += typeof chunk === "string" ? chunk : (chunk as Buffer).toString("utf8");
    if (text.length > MAX_STDIN_BYTES) throw new UsageError(`stdin: more than ${MAX_STDIN_BYTES} bytes; expected a lease id`);
  }
  return text;
}
