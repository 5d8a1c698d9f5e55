import { constants } from "node:os";

// Exit codes of the mcp-lockd commands, in one place (documented in
// docs/cli.md and in `mcp-lockd --help`). Where a sysexits.h code fits it is
// used, so that scripts and supervisors read them the usual way.

/** Success; under `run`, the command itself exited 0. */
export const EXIT_OK = 0;
/** An unexpected failure (a gRPC INTERNAL, a bug); the message says what. */
export const EXIT_FAILURE = 1;
/** EX_USAGE: bad arguments, or a request the service rejected as invalid (INVALID_ARGUMENT). */
export const EXIT_USAGE = 64;
/** EX_UNAVAILABLE: the service cannot be reached, is starting or shutting down, or its lock dir is unusable. */
export const EXIT_UNAVAILABLE = 69;
/** EX_NOPERM: the service refused the credentials (UNAUTHENTICATED) or the action (PERMISSION_DENIED). */
export const EXIT_NO_PERMISSION = 77;
/** EX_TEMPFAIL: the resource is held by someone else (`--wait 0`), or the wait ran out. Try again later. */
export const EXIT_BUSY = 75;
/**
 * The lease is gone: under `run`, it was lost while the command ran (the
 * command was stopped, or finished after the loss); for `release` and
 * `renew`, the lease is unknown, expired or already released. 76 is
 * EX_PROTOCOL in sysexits.h, which no tool here uses for anything else.
 */
export const EXIT_LEASE_LOST = 76;
/** `run`: the command was found but could not be executed (as in sh, env, timeout). */
export const EXIT_CANNOT_EXECUTE = 126;
/** `run`: the command was not found. */
export const EXIT_COMMAND_NOT_FOUND = 127;
/** 128 + the signal's number: interrupted (130 SIGINT, 143 SIGTERM, 129 SIGHUP), or `run`'s command died of that signal. */
export const EXIT_SIGNAL_BASE = 128;

/** The exit code that says "ended by `signal`": 128 + its number. */
export function exitCodeForSignal(signal: NodeJS.Signals): number {
  // The platform's numbering (SIGUSR1 is 10 on Linux, 30 on macOS); 0 for a name it does not know.
  return EXIT_SIGNAL_BASE + ((constants.signals as Partial<Record<string, number>>)[signal] ?? 0);
}

/** The table printed by `--help`; one line per code. */
export const EXIT_CODES_HELP = `Exit codes (client commands):
  0    ok (run: the command's own exit code is passed through)
  1    unexpected failure
  64   usage error, or a request the service rejects as invalid
  69   service unavailable (not running, starting, shutting down, lock dir unusable)
  75   busy: held by someone else with --wait 0, or the wait ran out
  77   refused: no or unknown credentials, or not permitted (--auth-file services)
  76   lease lost: run's lease was lost (the command was stopped); release or
       renew of an unknown, expired or already released lease
  126  run: the command cannot be executed; 127: not found
  128+N  run: the command died of signal N; or interrupted while waiting
       (130 SIGINT, 143 SIGTERM)
`;
