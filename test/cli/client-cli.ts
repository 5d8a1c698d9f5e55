// Running the client commands (run, status, acquire, renew, release) as real
// child processes: `node bin/mcp-lockd.js`, or the single executable when
// MCP_LOCKD_TEST_RUNTIME=binary (npm run test:binary), so the same tests
// prove the executable. (Under Deno only `serve` is supported: its
// permissions do not allow running commands, so Deno runs use Node here.)
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { cliCommand, testRuntime } from "../helpers/service-process.ts";
import { runProcess, type ProcessResult } from "../helpers/run-process.ts";

/** The command line of `mcp-lockd <args>` for the client commands. */
export function clientCliCommand(args: string[]): { command: string; args: string[] } {
  return cliCommand(args, testRuntime() === "binary" ? "binary" : "node");
}

/**
 * The test runner's environment without MCP_LOCKD_* variables and
 * NODE_OPTIONS (which the executable honours like node), plus `extra`.
 */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("MCP_LOCKD_") && key !== "NODE_OPTIONS") env[key] = value;
  }
  return { ...env, ...extra };
}

/** Runs a client command to completion against `address`. */
export function runClientCli(
  args: string[],
  options: { address?: string; env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {},
): Promise<ProcessResult> {
  const { command, args: full } = clientCliCommand(args);
  const env = cliEnv({ ...(options.address ? { MCP_LOCKD_ADDRESS: options.address } : {}), ...options.env });
  return runProcess(command, full, { env, cwd: options.cwd, timeoutMs: options.timeoutMs ?? 30_000 });
}

/** A client command running in the background, its output captured. */
export interface CliProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when stderr (as a whole) matches `pattern`; rejects if the process exits first or after `timeoutMs`. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves when stdout matches `pattern`, likewise. */
  waitForStdout(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves after the process has exited and its pipes have drained. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  kill(signal?: NodeJS.Signals): void;
}

export function startClientCli(
  args: string[],
  options: { address?: string; env?: Record<string, string>; stdin?: "ignore" | "pipe"; timeoutMs?: number } = {},
): CliProcess {
  const { command, args: full } = clientCliCommand(args);
  const env = cliEnv({ ...(options.address ? { MCP_LOCKD_ADDRESS: options.address } : {}), ...options.env });
  const child = spawn(command, full, { env, stdio: [options.stdin ?? "ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  const watchers = new Set<() => void>();
  const notify = () => {
    for (const watcher of [...watchers]) watcher();
  };
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
    notify();
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
    notify();
  });
  // A safety net only: each test awaits the events it needs.
  const killTimer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
  let done = false;
  const exited = once(child, "close").then(([code, signal]) => {
    clearTimeout(killTimer);
    done = true;
    notify();
    return { code: code as number | null, signal: signal as NodeJS.Signals | null, at: Date.now() };
  });

  const waitFor = (read: () => string, what: string) => (pattern: RegExp, timeoutMs = 20_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const timer = setTimeout(() => {
        watchers.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} to match ${pattern}; stderr so far:\n${stderr}`));
      }, timeoutMs);
      const check = () => {
        const match = read().match(pattern);
        if (match) {
          clearTimeout(timer);
          watchers.delete(check);
          resolve(match);
        } else if (done) {
          clearTimeout(timer);
          watchers.delete(check);
          reject(new Error(`the process exited before ${what} matched ${pattern}; stdout:\n${stdout}\nstderr:\n${stderr}`));
        }
      };
      watchers.add(check);
      check();
    });

  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    waitForStderr: waitFor(() => stderr, "stderr"),
    waitForStdout: waitFor(() => stdout, "stdout"),
    exited,
    kill: (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/** True while a process with this pid exists (a zombie counts until reaped). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
