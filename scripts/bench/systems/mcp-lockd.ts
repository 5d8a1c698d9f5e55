import { existsSync } from "node:fs";
import { join } from "node:path";
import { SERVICE_THREAD_POOL_SIZE } from "../../../src/cli/thread-pool-size.ts";
import { BINARY_PATH, CLI_PATH, REPO_ROOT } from "../paths.ts";
import type { BenchSystem, StartedSystem } from "./bench-system.ts";
import { envWithout, startServerProcess, type ServerProcess } from "./server-process.ts";
import { makeTempDir } from "./temp-dir.ts";

/** How mcp-lockd is run: `node bin/mcp-lockd.js` on the built output, or the single executable. */
export type McpLockdRuntime = "node" | "binary";

export function binaryExists(): boolean {
  return existsSync(BINARY_PATH);
}

/**
 * `mcp-lockd serve` as users run it, on ephemeral loopback ports, default
 * durability. NODE_OPTIONS and MCP_LOCKD_* are left out of its environment
 * so that only the command line configures it; the thread pool is sized as
 * `npm start` sizes it. The store: lease files in
 * `lockDir`, or with `etcd`, the etcd store on those endpoints and prefix.
 */
export function startMcpLockd(runtime: McpLockdRuntime, lockDir: string | { etcd: string; prefix: string }): Promise<ServerProcess> {
  const store = typeof lockDir === "string" ? ["--lock-dir", lockDir] : ["--store", "etcd", "--etcd-endpoints", lockDir.etcd, "--etcd-prefix", lockDir.prefix];
  const args = ["serve", ...store, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"];
  // BENCH_MCP_LOCKD_METRICS=off measures the service without its Prometheus
  // metrics (docs/operations.md gives both; the default is on, as users run it).
  if (process.env.BENCH_MCP_LOCKD_METRICS === "off") args.push("--metrics", "off");
  // BENCH_MCP_LOCKD_FSYNC=loop|pool: the file store's fsyncs on the event loop
  // or the thread pool (the default), to measure one against the other.
  const fsync = process.env.BENCH_MCP_LOCKD_FSYNC;
  if (fsync !== undefined && typeof lockDir === "string") args.push("--fsync", fsync);
  // BENCH_MCP_LOCKD_TRACE=FILE: where renewals spend their time, every 2 s,
  // by scripts/trace-renewals.mjs preloaded into the server (node runtime only).
  const trace = process.env.BENCH_MCP_LOCKD_TRACE;
  const preload = trace !== undefined && runtime === "node" ? ["--import", join(REPO_ROOT, "scripts", "trace-renewals.mjs")] : [];
  // BENCH_MCP_LOCKD_DURABILITY=off: every fsync of the service returns at
  // once (scripts/without-fsync.mjs), the upper bound of any cheaper durable
  // write; a measurement, never a way to run (node runtime only).
  if (process.env.BENCH_MCP_LOCKD_DURABILITY === "off" && runtime === "node") preload.push("--import", join(REPO_ROOT, "scripts", "without-fsync.mjs"));
  return startServerProcess({
    command: runtime === "node" ? process.execPath : BINARY_PATH,
    args: runtime === "node" ? [...preload, CLI_PATH, ...args] : args,
    ready: /mcp-lockd serving grpc=(\S+) http=(\S+)/,
    env: {
      ...envWithout("NODE_OPTIONS", "MCP_LOCKD_"),
      // The thread pool as `npm start` and the single executable size it (src/cli/thread-pool-size.ts).
      UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? String(SERVICE_THREAD_POOL_SIZE),
      ...(trace === undefined ? {} : { TRACE_RENEWALS_OUT: trace }),
    },
  });
}

export const mcpLockdSystem: BenchSystem = {
  name: "mcp-lockd",
  unavailable: undefined,
  notApplicable: {},
  async start(): Promise<StartedSystem> {
    const dir = await makeTempDir("mcp-lockd-bench-");
    let server: ServerProcess;
    try {
      server = await startMcpLockd("node", dir.path);
    } catch (err) {
      await dir.remove();
      throw err;
    }
    return {
      target: { system: "mcp-lockd", grpcAddress: server.match[1]!, httpAddress: server.match[2]! },
      serverPid: server.pid,
      async stop() {
        await server.stop();
        await dir.remove();
      },
    };
  },
};
