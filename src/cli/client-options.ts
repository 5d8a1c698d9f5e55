import { readFileSync } from "node:fs";
import { hostname, userInfo } from "node:os";
import type { LockClientTls } from "../client/types.ts";
import { AddressListError, DEFAULT_ADDRESS, parseAddressList } from "../client/address-list.ts";
import { MAX_HOLDER_BYTES } from "../core/limits.ts";
import { DurationSyntaxError, parseDuration } from "./duration.ts";

// What the client commands (run, status, acquire, release, renew) share:
// where the service is, durations from flags, and the default holder name.

export { DEFAULT_ADDRESS };

/** Bad arguments: said on stderr with a pointer to --help, exit 64. */
export class UsageError extends Error {
  override name = "UsageError";
}

/**
 * --address, else MCP_LOCKD_ADDRESS, else DEFAULT_ADDRESS: one address or
 * several replicas separated by commas (the client moves to the next when one
 * is down).
 */
export function resolveAddress(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const address = flag ?? (env.MCP_LOCKD_ADDRESS || undefined) ?? DEFAULT_ADDRESS;
  try {
    parseAddressList(address);
  } catch (err) {
    if (err instanceof AddressListError) throw new UsageError(`--address ${err.message}`);
    throw err;
  }
  return address;
}

/** The flags every client command takes to reach the service (spread into parseArgs options). */
export const CONNECTION_FLAGS = {
  address: { type: "string" },
  cacert: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  "token-file": { type: "string" },
} as const;

export const CONNECTION_USAGE = `Connection (every client command; flag, else environment):
  --address HOST:PORT   MCP_LOCKD_ADDRESS     default ${DEFAULT_ADDRESS}; several replicas
                        separated by commas (a:1,b:2): the next is used when one is down
  --cacert FILE         MCP_LOCKD_CACERT      use TLS, trusting this CA (PEM) for the service's certificate
  --cert FILE --key FILE  MCP_LOCKD_CERT, MCP_LOCKD_KEY   a client certificate (mutual TLS)
  --token-file FILE     MCP_LOCKD_TOKEN_FILE  a bearer token (the file's first line), for --auth-file services
`;

/** Where the service is and how to reach it: what LockClient's constructor takes. */
export interface ClientConnection {
  address: string;
  tls?: LockClientTls;
  token?: string;
}

/**
 * The connection from CONNECTION_FLAGS' values and the environment. TLS is on
 * when any of --cacert, --cert, --key is given (with no --cacert the system's
 * CAs are trusted). Files are read now, so a missing one is a usage error.
 */
export function resolveConnection(
  values: { address?: string; cacert?: string; cert?: string; key?: string; "token-file"?: string },
  env: NodeJS.ProcessEnv,
): ClientConnection {
  const address = resolveAddress(values.address, env);
  const pick = (flag: string, value: string | undefined, name: string) => {
    const path = value ?? (env[name] || undefined);
    return path === undefined ? undefined : { flag: value === undefined ? name : `--${flag}`, path };
  };
  const cacert = pick("cacert", values.cacert, "MCP_LOCKD_CACERT");
  const cert = pick("cert", values.cert, "MCP_LOCKD_CERT");
  const key = pick("key", values.key, "MCP_LOCKD_KEY");
  const tokenFile = pick("token-file", values["token-file"], "MCP_LOCKD_TOKEN_FILE");
  if ((cert === undefined) !== (key === undefined)) throw new UsageError("--cert and --key go together (a client certificate and its key)");
  const connection: ClientConnection = { address };
  if (cacert || cert || key) {
    connection.tls = {
      ...(cacert ? { ca: readOptionFile(cacert) } : {}),
      ...(cert ? { cert: readOptionFile(cert) } : {}),
      ...(key ? { key: readOptionFile(key) } : {}),
    };
  }
  if (tokenFile) {
    const token = readOptionFile(tokenFile).toString("utf8").split(/\r?\n/)[0]!.trim();
    if (token === "" || /\s/.test(token)) throw new UsageError(`${tokenFile.flag} ${tokenFile.path}: the first line must be the token (no spaces)`);
    connection.token = token;
  }
  return connection;
}

function readOptionFile({ flag, path }: { flag: string; path: string }): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`${flag} ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** A duration flag in milliseconds, or undefined when absent; a UsageError when malformed. */
export function durationOption(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  try {
    return parseDuration(value, flag);
  } catch (err) {
    if (err instanceof DurationSyntaxError) throw new UsageError(err.message);
    throw err;
  }
}


/**
 * The holder name others see when none is given: who and where, so that a
 * person looking at `mcp-lockd status` knows whom to ask. `what` says what
 * holds it (say the command's name under `run`). Never the command's
 * arguments: they may carry secrets.
 */
export function defaultHolder(env: NodeJS.ProcessEnv, pid: number, what: string): string {
  let user = env.USER || env.LOGNAME || "";
  if (user === "") {
    try {
      user = userInfo().username;
    } catch {
      // No passwd entry (a container running as an arbitrary uid).
      user = `uid-${process.getuid?.() ?? "unknown"}`;
    }
  }
  return clipHolder(`${user}@${hostname()} pid ${pid} ${what}`.replace(/[\u0000-\u001f\u007f]/g, "?"));
}

/** At most 256 bytes of UTF-8 (the service's limit), cut at a character boundary. */
function clipHolder(holder: string): string {
  if (Buffer.byteLength(holder, "utf8") <= MAX_HOLDER_BYTES) return holder;
  let clipped = "";
  for (const char of holder) {
    if (Buffer.byteLength(clipped + char, "utf8") > MAX_HOLDER_BYTES) break;
    clipped += char;
  }
  return clipped;
}
