import type { ChannelSecurity } from "../client/channel.ts";
import type { LockEventInfo } from "../client/index.ts";
import { describeFailure, exitCodeFor } from "./client-failure.ts";
import type { CommandIo } from "./command-io.ts";
import { EXIT_OK, exitCodeForSignal } from "./exit-codes.ts";
import { catchSignals, INTERRUPT_SIGNALS } from "./lock-waiting.ts";
import { describeEvent, eventToJson, LockSet } from "./lock-event-view.ts";
import { formatLockTable } from "./lock-table.ts";
import { runWatchSession } from "./watch-session.ts";

// `mcp-lockd status --watch`: the locks live, as a redrawn table on a
// terminal or as JSON lines for programs.

const RECENT_EVENTS = 8;
/** The table is redrawn at most this often on events, and every second for the countdowns. */
const REDRAW_MS = 100;

export async function watchStatus(options: { address: string; security?: ChannelSecurity; prefix: string; json: boolean; io: CommandIo }): Promise<number> {
  const { address, prefix, io } = options;
  const live = !options.json && io.stdoutIsTTY === true;
  const interrupt = new AbortController();
  let interruptedBy: NodeJS.Signals | undefined;
  const restoreSignals = catchSignals(INTERRUPT_SIGNALS, (signal) => {
    interruptedBy = signal;
    interrupt.abort();
  });
  const locks = new LockSet();
  const recent: string[] = [];
  let snapshotDone = false;
  let redrawTimer: NodeJS.Timeout | undefined;
  let ticker: NodeJS.Timeout | undefined;
  // JSON lines are written in order; a closed stdout (EPIPE) ends the watch.
  let writing = Promise.resolve();
  const write = (text: string) => {
    writing = writing.then(() => io.stdout(text)).catch(() => interrupt.abort());
  };
  const draw = () => {
    redrawTimer = undefined;
    const header = `mcp-lockd status --watch ${address}${prefix ? ` prefix ${JSON.stringify(prefix)}` : ""}  ${new Date().toISOString().slice(0, 19)}Z  (Ctrl-C ends)\n\n`;
    const feed = recent.length > 0 ? `\nrecent events:\n${recent.map((line) => `  ${line}\n`).join("")}` : "";
    write(`\x1b[H\x1b[2J${header}${formatLockTable(locks.list(), Date.now())}${feed}`);
  };
  const scheduleDraw = () => {
    if (live && snapshotDone) redrawTimer ??= setTimeout(draw, REDRAW_MS);
  };
  const onEvent = (event: LockEventInfo) => {
    if (!live) {
      write(`${JSON.stringify(eventToJson(event))}\n`);
      return;
    }
    locks.apply(event);
    if (event.type === "SNAPSHOT_COMPLETE") {
      snapshotDone = true;
      ticker ??= setInterval(draw, 1_000);
      draw();
      return;
    }
    if (snapshotDone && event.type !== "HELD" && event.type !== "RENEWED") {
      recent.unshift(describeEvent(event));
      recent.length = Math.min(recent.length, RECENT_EVENTS);
    }
    scheduleDraw();
  };
  try {
    await runWatchSession({
      address,
      security: options.security,
      prefix,
      signal: interrupt.signal,
      onEvent,
      onReconnect: (why, delayMs) => {
        locks.reset();
        io.stderr(`mcp-lockd status --watch: ${why}; watching again in ${Math.round(delayMs)}ms\n`);
      },
    });
    await writing;
    return interruptedBy ? exitCodeForSignal(interruptedBy) : EXIT_OK;
  } catch (err) {
    io.stderr(`mcp-lockd status --watch: ${describeFailure(err, address)}\n`);
    return exitCodeFor(err);
  } finally {
    clearTimeout(redrawTimer);
    clearInterval(ticker);
    restoreSignals();
  }
}
