import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { sharedNow } from "../clock.ts";

/** Servers still running, so that an interrupted benchmark can stop them (see stopAllServers). */
const running = new Set<ChildProcess>();

/** SIGTERM to every server still running: for an orchestrator that is being interrupted. */
export function stopAllServers(): void {
  for (const child of running) child.kill("SIGTERM");
}

export interface ServerProcess {
  child: ChildProcess;
  pid: number;
  /** The ready line's match. */
  match: RegExpExecArray;
  /** From spawn to the ready line, in ms. */
  readyMs: number;
  /** The last few KiB of its output, for error messages. */
  output(): string;
  /** SIGTERM, then SIGKILL if it has not exited after 10 s. */
  stop(): Promise<void>;
}

/**
 * Spawns a server and waits until it prints a line matching `ready` on
 * stdout or stderr: that line is what "serving" means for it (mcp-lockd:
 * "mcp-lockd serving ...", once its lease files are loaded and both ports
 * bound; etcd: its "serving client traffic" log line, once it has elected
 * itself and published its member).
 */
export async function startServerProcess(options: {
  command: string;
  args: string[];
  ready: RegExp;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}): Promise<ServerProcess> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const started = sharedNow();
  const child = spawn(options.command, options.args, { stdio: ["ignore", "pipe", "pipe"], env: options.env ?? process.env });
  running.add(child);
  child.once("exit", () => running.delete(child));
  let output = "";
  let scanned = "";
  const exited = new Promise<string>((resolve) => {
    child.once("exit", (code, signal) => resolve(`exited (${signal ?? code})`));
    child.once("error", (err) => resolve(`could not be run: ${err.message}`));
  });
  const ready = new Promise<{ match: RegExpExecArray; at: number }>((resolve) => {
    // Reading both pipes for the whole life of the process also keeps a
    // chatty server from blocking on a full pipe.
    const onData = (chunk: string) => {
      const at = sharedNow();
      output = (output + chunk).slice(-16_000);
      scanned += chunk;
      const match = options.ready.exec(scanned);
      if (match) resolve({ match, at });
      else scanned = scanned.slice(-4_000); // a ready line is far shorter
    };
    child.stdout!.setEncoding("utf8").on("data", onData);
    child.stderr!.setEncoding("utf8").on("data", onData);
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`was not serving after ${timeoutMs} ms`), timeoutMs);
  });
  const outcome = await Promise.race([ready, exited, timeout]);
  clearTimeout(timer);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    const exit = once(child, "exit");
    child.kill("SIGTERM");
    const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exit;
    clearTimeout(kill);
  };
  if (typeof outcome === "string") {
    await stop();
    throw new Error(`${options.command} ${outcome}:\n${output.slice(-3000)}`);
  }
  return { child, pid: child.pid!, match: outcome.match, readyMs: outcome.at - started, output: () => output, stop };
}

/** The environment without variables of the given prefixes, so a user's settings do not change what is measured. */
export function envWithout(...prefixes: string[]): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !prefixes.some((prefix) => key.startsWith(prefix))));
}
