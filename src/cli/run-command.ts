import { basename } from "node:path";
import { parseArgs } from "node:util";
import { LeaseLostError, LockClient, ResourceBusyError, type Lock } from "../client/index.ts";
import { keepAliveDiagnostics } from "../client/diagnostics.ts";
import { describeBusy, describeFailure, exitCodeFor } from "./client-failure.ts";
import { CONNECTION_FLAGS, defaultHolder, durationOption, resolveConnection, UsageError, DEFAULT_ADDRESS, type ClientConnection } from "./client-options.ts";
import { SpawnError, SupervisedChild, type ChildExit } from "./child-supervisor.ts";
import { processIo, type CommandIo } from "./command-io.ts";
import { quoted, printable } from "./display-text.ts";
import { formatDuration } from "./duration.ts";
import {
  EXIT_BUSY,
  EXIT_CANNOT_EXECUTE,
  EXIT_COMMAND_NOT_FOUND,
  EXIT_LEASE_LOST,
  EXIT_USAGE,
  exitCodeForSignal,
} from "./exit-codes.ts";
import { acquireInterruptibly, catchSignals, INTERRUPT_SIGNALS, InterruptedError } from "./lock-waiting.ts";

// `mcp-lockd run RESOURCE -- COMMAND`: runs a command while holding a lock,
// like `etcdctl lock NAME -- CMD`, `consul lock` or flock(1). The client keeps
// the lease alive; if it is lost anyway, the command is stopped (SIGTERM to
// its process group, SIGKILL after --grace), because it is no longer alone.

/** How long a command has between SIGTERM and SIGKILL once the lease is lost. */
export const DEFAULT_GRACE_MS = 5_000;
const MAX_GRACE_MS = 3_600_000;

export const RUN_USAGE = `Usage:
  mcp-lockd run RESOURCE [--ttl D] [--wait D] [--holder NAME] [--grace D] [--address HOST:PORT[,...]] -- COMMAND [ARGS...]

Waits for RESOURCE (in FIFO order), runs COMMAND with stdio inherited while
the lease is kept alive, releases it when COMMAND exits, and exits with
COMMAND's exit code (128+N if it died of signal N). COMMAND's environment has
  MCP_LOCKD_RESOURCE       the resource
  MCP_LOCKD_FENCING_TOKEN  this grant's fencing token: pass it to the systems you write to
  MCP_LOCKD_EXPIRES_AT     the lease's expiry at the start (RFC 3339); renewals move it on
While waiting, stderr says who holds the resource (a live line on a terminal,
a line per holder otherwise). SIGINT, SIGTERM or SIGHUP while waiting leave
the queue and exit 130, 143 or 129; while COMMAND runs they (and SIGQUIT,
SIGUSR2, SIGWINCH) are forwarded to it, and Ctrl-Z stops it with run.

If the lease is lost (the service says it expired, or no renewal was
confirmed before the last confirmed expiry), run says so on stderr, sends
SIGTERM to COMMAND's process group, SIGKILL after the grace period, and exits
76 whatever COMMAND's own exit code was. It also exits 76 if the lease turns
out to be gone when COMMAND finishes.

  --ttl D       lease time to live, 1s to 1h (default 30s); renewed every ttl/3
  --wait D      how long to wait (default: as long as the service allows, 24h);
                0 tries once and exits 75 if the resource is held
  --holder NAME shown to others (default USER@HOST pid PID (mcp-lockd run COMMAND))
  --grace D     SIGTERM to SIGKILL after a loss (default ${formatDuration(DEFAULT_GRACE_MS)}; 0 = SIGKILL at once)
  --address     MCP_LOCKD_ADDRESS, else ${DEFAULT_ADDRESS}; several replicas
                separated by commas: renewals move to the next when one is down
  --cacert F, --cert F, --key F, --token-file F: TLS and credentials (MCP_LOCKD_CACERT, MCP_LOCKD_CERT, MCP_LOCKD_KEY, MCP_LOCKD_TOKEN_FILE)
Durations: 500ms, 30s, 5m, 1h, 1m30s; a bare number is seconds.
COMMAND runs in its own process group and session (so that a loss stops
everything it started): it has no controlling terminal, so programs that
open /dev/tty to prompt cannot.
`;

export interface RunArgs {
  address: string;
  connection: ClientConnection;
  resource: string;
  ttl: number | undefined;
  wait: number;
  holder: string;
  graceMs: number;
  command: string;
  commandArgs: string[];
}

export function parseRunArgs(args: string[], env: NodeJS.ProcessEnv, pid = process.pid): RunArgs {
  const split = args.indexOf("--");
  if (split < 0) throw new UsageError("the command goes after --: mcp-lockd run RESOURCE [options] -- COMMAND [ARGS...]");
  const [command, ...commandArgs] = args.slice(split + 1);
  if (command === undefined || command === "") throw new UsageError("no command after --");
  const { values, positionals } = parseArgs({
    args: args.slice(0, split),
    options: {
      ttl: { type: "string" },
      wait: { type: "string" },
      holder: { type: "string" },
      grace: { type: "string" },
      ...CONNECTION_FLAGS,
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0
        ? "say which resource to lock: mcp-lockd run RESOURCE [options] -- COMMAND [ARGS...]"
        : `one resource only, before --; got ${positionals.map((p) => quoted(p)).join(" ")}`,
    );
  }
  const graceMs = durationOption(values.grace, "--grace") ?? DEFAULT_GRACE_MS;
  if (graceMs > MAX_GRACE_MS) throw new UsageError(`--grace ${values.grace}: at most 1h`);
  const connection = resolveConnection(values, env);
  return {
    address: connection.address,
    connection,
    resource: positionals[0]!,
    ttl: durationOption(values.ttl, "--ttl"),
    wait: durationOption(values.wait, "--wait") ?? Number.POSITIVE_INFINITY,
    holder: values.holder ?? defaultHolder(env, pid, `(mcp-lockd run ${basename(command)})`),
    graceMs,
    command,
    commandArgs,
  };
}

/** Signals passed on to the command while it runs, besides INTERRUPT_SIGNALS. */
const ALSO_FORWARDED: readonly NodeJS.Signals[] = ["SIGQUIT", "SIGUSR2", "SIGWINCH"];

export async function runRunCommand(args: string[], io: CommandIo = processIo): Promise<number> {
  let parsed: RunArgs;
  try {
    parsed = parseRunArgs(args, io.env);
  } catch (err) {
    io.stderr(`mcp-lockd run: ${(err as Error).message}\n(mcp-lockd run --help shows the usage)\n`);
    return EXIT_USAGE;
  }
  const say = (text: string) => io.stderr(`mcp-lockd run: ${text}\n`);
  const resource = quoted(parsed.resource);
  const client = new LockClient(parsed.connection);
  if (client.addresses.length > 1) {
    // Replicas: say where renewals went when they move (the command is not disturbed).
    const diagnostics = client[keepAliveDiagnostics];
    let renewingThrough: string | undefined;
    diagnostics.once("stream-opened", ({ address }: { address: string }) => (renewingThrough ??= address));
    diagnostics.on("renewed", ({ address }: { address: string }) => {
      if (renewingThrough !== undefined && address !== renewingThrough) say(`renewed ${resource} through ${address} (${renewingThrough} stopped answering)`);
      renewingThrough = address;
    });
  }

  // One handler for run's whole life (see lock-waiting.ts): it ends the wait,
  // then is forwarded to the command while it runs, then is ignored while
  // the lease is released.
  const interrupt = new AbortController();
  let child: SupervisedChild | undefined;
  const stopCatching = catchSignals(INTERRUPT_SIGNALS, (signal) => {
    if (child) child.signal(signal);
    else interrupt.abort(new InterruptedError(signal));
  });
  try {
    let lock: Lock;
    try {
      lock = await acquireInterruptibly(
        client,
        parsed.resource,
        { holder: parsed.holder, ttl: parsed.ttl, wait: parsed.wait },
        interrupt.signal,
        io,
        "mcp-lockd run",
      );
    } catch (err) {
      if (err instanceof InterruptedError) {
        say(`${err.signal} while waiting for ${resource}: left the queue; the command did not run`);
        return exitCodeForSignal(err.signal);
      }
      if (err instanceof ResourceBusyError) {
        const why =
          parsed.wait === 0
            ? "not waiting (--wait 0)"
            : Number.isFinite(parsed.wait)
              ? `gave up after waiting ${formatDuration(parsed.wait)} (--wait)`
              : "gave up after the longest wait the service allows (24h)";
        say(`${describeBusy(err)}; ${why}; the command did not run`);
        return EXIT_BUSY;
      }
      say(`${describeFailure(err, parsed.address)}; the command did not run`);
      return exitCodeFor(err);
    }

    if (interrupt.signal.reason instanceof InterruptedError || lock.signal.aborted) {
      // A signal or a loss between the grant and the start: do not start.
      await lock.release().catch(() => {});
      if (interrupt.signal.reason instanceof InterruptedError) return exitCodeForSignal(interrupt.signal.reason.signal);
      say(`lost the lock on ${resource} before the command started: ${describeLoss(lock)}`);
      return EXIT_LEASE_LOST;
    }

    const env: NodeJS.ProcessEnv = {
      ...io.env,
      MCP_LOCKD_RESOURCE: lock.resource,
      MCP_LOCKD_FENCING_TOKEN: lock.fencingToken.toString(),
      MCP_LOCKD_EXPIRES_AT: lock.expiresAt.toISOString(),
    };
    try {
      child = await SupervisedChild.start(parsed.command, parsed.commandArgs, env);
    } catch (err) {
      await lock.release().catch(() => {});
      if (!(err instanceof SpawnError)) throw err;
      say(`${printable(err.message)}; released ${resource}`);
      return err.errno === "ENOENT" ? EXIT_COMMAND_NOT_FOUND : EXIT_CANNOT_EXECUTE;
    }
    // A signal that came while the command was being started is its to handle.
    if (interrupt.signal.reason instanceof InterruptedError) child.signal(interrupt.signal.reason.signal);
    return await superviseWhileLocked(client, child, lock, parsed, say);
  } finally {
    stopCatching();
    client.close();
  }
}

/** Runs until the command exits; then releases. Resolves to run's exit code. */
async function superviseWhileLocked(
  client: LockClient,
  child: SupervisedChild,
  lock: Lock,
  parsed: RunArgs,
  say: (text: string) => void,
): Promise<number> {
  const resource = quoted(parsed.resource);
  let lost = false;
  const onLost = () => {
    if (lost) return;
    lost = true;
    const grace =
      parsed.graceMs > 0 ? `SIGTERM to its process group now, SIGKILL in ${formatDuration(parsed.graceMs)} (--grace)` : "SIGKILL now (--grace 0)";
    say(`LOST the lock on ${resource}: ${describeLoss(lock)}. Stopping the command (pid ${child.pid}): ${grace}`);
    child.terminate(parsed.graceMs, {
      onKill: () => parsed.graceMs > 0 && say(`the command outlived the ${formatDuration(parsed.graceMs)} grace period: SIGKILL`),
    });
  };
  lock.signal.addEventListener("abort", onLost, { once: true });
  if (lock.signal.aborted) onLost();

  const stopForwarding = catchSignals(ALSO_FORWARDED, (signal) => child.signal(signal));
  // Ctrl-Z: the command has no terminal, so it would go on running while run
  // is stopped and its lease runs out. Stop it too, then stop run itself.
  const stopJobControl = catchSignals(["SIGTSTP"], () => {
    child.suspend();
    process.kill(process.pid, "SIGSTOP");
  });
  const stopResuming = catchSignals(["SIGCONT"], () => {
    // While run was stopped no renewal went out; a lease whose last
    // confirmed expiry has passed is lost, whatever the timers say yet.
    if (!lost && Date.now() >= lock.expiresAt.getTime()) onLost();
    else child.resume();
  });

  let exit: ChildExit;
  try {
    exit = await child.exited;
  } finally {
    lock.signal.removeEventListener("abort", onLost);
    stopResuming();
    stopJobControl();
    stopForwarding();
  }
  const commandCode = exit.code ?? exitCodeForSignal(exit.signal!);
  if (lost) {
    say(`the command ${describeExit(exit)} after the lock on ${resource} was lost; exit ${EXIT_LEASE_LOST}`);
    return EXIT_LEASE_LOST;
  }

  let gone = false;
  try {
    // client.release, not lock.release: it says whether the lease was still live.
    gone = !(await client.release(lock.leaseId));
  } catch (err) {
    if (err instanceof LeaseLostError) gone = true;
    else {
      // The command ran under the lock; only the release failed. The lease
      // ends by itself at its expiry, and the next waiter gets it then.
      say(`could not release ${resource} (${describeFailure(err, parsed.address)}); it expires by itself at ${lock.expiresAt.toISOString()}`);
    }
  }
  if (gone) {
    say(`the command ${describeExit(exit)}, but the lease on ${resource} was already gone when releasing it: the lock was lost before the command finished; exit ${EXIT_LEASE_LOST}`);
    return EXIT_LEASE_LOST;
  }
  return commandCode;
}

function describeLoss(lock: Lock): string {
  const reason: unknown = lock.signal.reason;
  if (reason instanceof Error) return printable(reason.message);
  return "the lease is gone";
}

function describeExit(exit: ChildExit): string {
  return exit.signal ? `died of ${exit.signal}` : `exited with code ${exit.code}`;
}
