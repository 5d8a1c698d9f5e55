import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { TestLockClient } from "./lock-client.ts";
import { makeTempDir } from "./temp-dir.ts";

export const CLI_PATH = fileURLToPath(new URL("../../../bin/mcp-lockd.js", import.meta.url));

export interface ServiceProcess {
  child: ChildProcess;
  grpcAddress: string;
  httpAddress: string;
  /** Everything the service wrote to stderr so far. */
  stderr(): string;
  /** Sends a signal and waits for the exit; resolves to the exit code or signal. */
  stop(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>;
}

/**
 * Starts `mcp-lockd serve` as a real child process on ephemeral ports and
 * waits for its "serving" line. Pass fixed ports to restart on the same ones.
 */
export async function startServiceProcess(options: {
  lockDir: string;
  grpcListen?: string;
  httpListen?: string;
  env?: Record<string, string>;
}): Promise<ServiceProcess> {
  const child = spawn(
    process.execPath,
    [
      CLI_PATH,
      "serve",
      "--lock-dir",
      options.lockDir,
      "--grpc-listen",
      options.grpcListen ?? "127.0.0.1:0",
      "--http-listen",
      options.httpListen ?? "127.0.0.1:0",
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...options.env } },
  );
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
    void exited.then((code) => reject(new Error(`mcp-lockd exited (${code}) before serving:\n${stderr}`)));
  });
  const timeout = setTimeout(() => child.kill("SIGKILL"), 20_000);
  try {
    const { grpc, http } = await ready;
    return {
      child,
      grpcAddress: grpc,
      httpAddress: http,
      stderr: () => stderr,
      async stop(signal = "SIGTERM") {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        return exited;
      },
    };
  } finally {
    clearTimeout(timeout);
  }
}

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
