import { parseArgs } from "node:util";
import type { LockEventInfo } from "../client/index.ts";
import { validateResource } from "../core/limits.ts";
import { describeFailure, exitCodeFor } from "./client-failure.ts";
import { CONNECTION_FLAGS, DEFAULT_ADDRESS, durationOption, resolveConnection, UsageError, type ClientConnection } from "./client-options.ts";
import { processIo, type CommandIo } from "./command-io.ts";
import { quoted } from "./display-text.ts";
import { formatDuration } from "./duration.ts";
import { EXIT_BUSY, EXIT_OK, EXIT_USAGE, exitCodeForSignal } from "./exit-codes.ts";
import { catchSignals, INTERRUPT_SIGNALS } from "./lock-waiting.ts";
import { runWatchSession } from "./watch-session.ts";

// `mcp-lockd wait RESOURCE --until free`: for scripts that must not start
// until a lock is free (or held), without taking it. Built on Watch, so it
// wakes the moment the lock changes instead of polling.

export const WAIT_USAGE = `Usage:
  mcp-lockd wait RESOURCE --until free|held [--timeout D] [--address HOST:PORT]

Waits, without taking the lock, until RESOURCE is free (no lease, or its
lease was released or expired) or held, then exits 0. Exits at once if it
already is. With --timeout, gives up after D (500ms, 30s, 5m...) and exits 75.
It follows the lock through service restarts.
  --address  MCP_LOCKD_ADDRESS, else ${DEFAULT_ADDRESS}
  --cacert F, --cert F --key F, --token-file F: TLS and credentials, as for the other client commands
`;

export async function runWaitCommand(args: string[], io: CommandIo = processIo): Promise<number> {
  let address: string;
  let security: ClientConnection;
  let resource: string;
  let until: "free" | "held";
  let timeoutMs: number | undefined;
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { until: { type: "string" }, timeout: { type: "string" }, ...CONNECTION_FLAGS },
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length !== 1) throw new UsageError("exactly one RESOURCE");
    resource = validateResource(positionals[0]!);
    if (values.until !== "free" && values.until !== "held") {
      throw new UsageError(`--until ${values.until === undefined ? "is required" : JSON.stringify(values.until)}: expected free or held`);
    }
    until = values.until;
    timeoutMs = durationOption(values.timeout, "--timeout");
    security = resolveConnection(values, io.env);
    address = security.address;
  } catch (err) {
    io.stderr(`mcp-lockd wait: ${(err as Error).message}\n(mcp-lockd wait --help shows the usage)\n`);
    return EXIT_USAGE;
  }

  const stop = new AbortController();
  let interruptedBy: NodeJS.Signals | undefined;
  let timedOut = false;
  const restoreSignals = catchSignals(INTERRUPT_SIGNALS, (signal) => {
    interruptedBy = signal;
    stop.abort();
  });
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => ((timedOut = true), stop.abort()), timeoutMs);
  let held: LockEventInfo | undefined;
  let snapshotDone = false;
  let reached = false;
  const isReached = () => (until === "free" ? held === undefined : held !== undefined);
  try {
    await runWatchSession({
      address,
      security,
      prefix: resource,
      signal: stop.signal,
      onEvent: (event) => {
        // The prefix also matches longer names: only RESOURCE counts.
        if (event.type === "SNAPSHOT_COMPLETE") {
          snapshotDone = true;
          if (!isReached() && held !== undefined) {
            io.stderr(`waiting until ${quoted(resource)} is free; held by ${quoted(held.holder)} for ${formatDuration(Date.now() - (held.acquiredAt?.getTime() ?? Date.now()))}\n`);
          }
        } else if (event.resource === resource) {
          if (event.type === "HELD" && !snapshotDone) held = event;
          else if (event.state === "free") held = undefined;
          else if (event.type !== "WAITERS_CHANGED") held = event;
        } else {
          return false;
        }
        reached = snapshotDone && isReached();
        return reached;
      },
      onReconnect: (why) => {
        snapshotDone = false;
        held = undefined;
        io.stderr(`mcp-lockd wait: ${why}; watching again\n`);
      },
    });
    if (reached) return EXIT_OK;
    if (timedOut) {
      io.stderr(`mcp-lockd wait: ${quoted(resource)} was still ${until === "free" ? "held" : "free"} after ${formatDuration(timeoutMs!)}\n`);
      return EXIT_BUSY;
    }
    return exitCodeForSignal(interruptedBy ?? "SIGINT");
  } catch (err) {
    io.stderr(`mcp-lockd wait: ${describeFailure(err, address)}\n`);
    return exitCodeFor(err);
  } finally {
    clearTimeout(timer);
    restoreSignals();
  }
}
