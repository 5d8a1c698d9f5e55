import { hostname, userInfo } from "node:os";
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
