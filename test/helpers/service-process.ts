import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { TestLockClient } from "./lock-client.ts";
import { makeTempDir } from "./temp-dir.ts";

export const CLI_PATH = fileURLToPath(new URL("../../../bin/mcp-lockd.js", import.meta.url));
/** Runs the CLI from src/ under Deno with least permissions (npm run start:deno). */
export const DENO_RUN_PATH = fileURLToPath(new URL("../../../scripts/deno-run.sh", import.meta.url));
/** Where `npm run build:binary` writes the single executable. */
export const BUILT_BINARY_PATH = fileURLToPath(new URL("../../../dist/mcp-lockd", import.meta.url));

/**
 * What runs the service: `node bin/mcp-lockd.js` (the default), Deno on src/,
 * or the single executable.
 */
export type ServiceRuntime = "node" | "deno" | "binary";

const RUNTIMES: readonly ServiceRuntime[] = ["node", "deno", "binary"];

/**
 * The runtime the e2e files target, from MCP_LOCKD_TEST_RUNTIME (node when
 * unset), so that the same files run against each. An unknown value throws:
 * a typo must not quietly test Node again.
 */
export function testRuntime(env: NodeJS.ProcessEnv = process.env): ServiceRuntime {
  const value = env.MCP_LOCKD_TEST_RUNTIME;
  if (value === undefined || value === "") return "node";
  if (!(RUNTIMES as readonly string[]).includes(value)) {
    throw new Error(`MCP_LOCKD_TEST_RUNTIME=${value}: expected one of ${RUNTIMES.join(", ")}`);
  }
  return value as ServiceRuntime;
}

/**
 * The command line that runs `mcp-lockd <args>` under `runtime`. The binary is
 * MCP_LOCKD_TEST_BINARY, else dist/mcp-lockd, unless `binary` is given.
 */
export function cliCommand(
  args: string[],
  runtime: ServiceRuntime = testRuntime(),
  binary?: string,
): { command: string; args: string[] } {
  switch (runtime) {
    case "node":
      return { command: process.execPath, args: [CLI_PATH, ...args] };
    case "deno":
      // The script execs Deno, so signals sent to the child reach Deno itself.
      return { command: DENO_RUN_PATH, args };
    case "binary":
      return { command: binary ?? process.env.MCP_LOCKD_TEST_BINARY ?? BUILT_BINARY_PATH, args };
  }
}

export interface ServiceProcess {
  child: ChildProcess;
  grpcAddress: string;
  httpAddress: string;
  /** Everything the service wrote to stderr so far. */
  stderr(): string;
  /** Sends a signal and waits for the exit; resolves to the exit code or signal. */
  stop(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>;
}

export interface ServiceProcessOptions {
  /** --lock-dir; leave it out when `extraArgs` choose another store (--store etcd ...). */
  lockDir?: string;
  grpcListen?: string;
  httpListen?: string;
  env?: Record<string, string>;
  runtime?: ServiceRuntime;
  /** The executable, for runtime "binary". */
  binary?: string;
  cwd?: string;
  /** More `serve` flags (TLS, --auth-file...). */
  extraArgs?: string[];
}

/**
 * Starts `mcp-lockd serve` as a real child process on ephemeral ports and
 * waits for its "serving" line. Pass fixed ports to restart on the same ones.
 * It runs under `runtime`, by default the one MCP_LOCKD_TEST_RUNTIME names.
 */
export async function startServiceProcess(options: ServiceProcessOptions): Promise<ServiceProcess> {
  const { command, args } = cliCommand(
    [
      "serve",
      ...(options.lockDir === undefined ? [] : ["--lock-dir", options.lockDir]),
      "--grpc-listen",
      options.grpcListen ?? "127.0.0.1:0",
      "--http-listen",
      options.httpListen ?? "127.0.0.1:0",
      ...(options.extraArgs ?? []),
    ],
    options.runtime,
    options.binary,
  );
  const child = spawn(command, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...options.env },
    cwd: options.cwd,
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = once(child, "exit").then(([code, signal]) => (signal ?? code) as number | NodeJS.Signals);
  const ready = new Promise<{ grpc: string; http: string }>((resolve, reject) => {
    let stdout = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      const match = /mcp-lockd serving grpc=(\S+) http=(\S+)/.exec(stdout);
      if (match) resolve({ grpc: match[1]!, http: match[2]! });
    });
    void exited.then(
      (code) => reject(new Error(`mcp-lockd exited (${code}) before serving:\n${stderr}`)),
      // A command that cannot be spawned (say, a missing binary) emits 'error', not 'exit'.
      (err: unknown) => reject(new Error(`cannot run ${command}: ${(err as Error).message}`)),
    );
  });
  const timeout = setTimeout(() => child.kill("SIGKILL"), 20_000);
  try {
    const { grpc, http } = await ready;
    let stopping = false;
    // A service that dies by itself (a crash, an abort) fails its test in some
    // other way, often a connection timeout: say what happened to it.
    void exited.then((code) => {
      if (!stopping && !DELIBERATE_ENDS.has(code)) {
        process.stderr.write(`mcp-lockd (pid ${child.pid}, ${options.runtime ?? testRuntime()}) ended by itself (${code}) after serving; its stderr ended:\n${stderr.slice(-4_000)}\n`);
      }
    });
    return {
      child,
      grpcAddress: grpc,
      httpAddress: http,
      stderr: () => stderr,
      async stop(signal = "SIGTERM") {
        stopping = true;
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        return exited;
      },
    };
  } finally {
    clearTimeout(timeout);
  }
}

/** How a test ends a service itself (directly, or through `stop`): a clean exit or a signal a test sends. */
const DELIBERATE_ENDS = new Set<number | NodeJS.Signals>([0, "SIGTERM", "SIGKILL", "SIGINT"]);

export interface ServiceFixture {
  /** A fresh temp dir (removed by close()). */
  dir: string;
  /** The service's lock dir: `dir` itself, or `join(dir, lockSubdir)` (created by the service). */
  lockDir: string;
  service: ServiceProcess;
  client: TestLockClient;
  /** Closes the client, stops the service (SIGTERM) and removes `dir`; safe to call twice. */
  close(): Promise<void>;
}

/**
 * A temp dir, `mcp-lockd serve` on ephemeral ports with its lock dir in it,
 * and a TestLockClient connected to it. If any step fails, what was already
 * started is cleaned up before the error is thrown.
 */
export async function startServiceFixture(options: { lockSubdir?: string } = {}): Promise<ServiceFixture> {
  const temp = await makeTempDir();
  const lockDir = options.lockSubdir === undefined ? temp.path : join(temp.path, options.lockSubdir);
  let service: ServiceProcess | undefined;
  let client: TestLockClient | undefined;
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      try {
        client?.close();
        await service?.stop();
      } finally {
        await temp.remove();
      }
    })());
  try {
    service = await startServiceProcess({ lockDir });
    client = new TestLockClient(service.grpcAddress);
  } catch (err) {
    await close();
    throw err;
  }
  return { dir: temp.path, lockDir, service, client, close };
}
