import { join } from "node:path";
import { BINARY_PATH, CLI_PATH, REPO_ROOT } from "../bench/paths.ts";
import { ChaosChild } from "./child-process.ts";
import { mono, type HistoryWriter } from "./history.ts";

/** What runs the service: Node on bin/mcp-lockd.js, the single executable (npm run build:binary), or Deno on src/. */
export type ServiceRuntime = "node" | "binary" | "deno";
export const SERVICE_RUNTIMES: readonly ServiceRuntime[] = ["node", "binary", "deno"];

/** The command line of `mcp-lockd` under `runtime` (as test/helpers/service-process.ts runs it). */
export function serviceCommand(runtime: ServiceRuntime): { command: string; args: string[] } {
  switch (runtime) {
    case "node":
      return { command: process.execPath, args: [CLI_PATH] };
    case "binary":
      return { command: BINARY_PATH, args: [] };
    case "deno":
      // The script execs Deno, so the injector's signals reach the service itself.
      return { command: join(REPO_ROOT, "scripts", "deno-run.sh"), args: [] };
  }
}
const SERVE_TIMEOUT_MS = 20_000;

/**
 * The service under test: `mcp-lockd serve` on loopback, restarted on the
 * same gRPC port after every SIGKILL (clients reconnect to one address).
 * An exit the campaign did not cause is recorded as such and the service is
 * started again, so the campaign goes on.
 */
export class ServiceControl {
  current: ChaosChild | undefined;
  address = "127.0.0.1:0";
  private starts = 0;
  private ending = false;

  constructor(
    private readonly lockDir: string,
    private readonly logDir: string,
    private readonly history: HistoryWriter,
    private readonly runtime: ServiceRuntime = "node",
  ) {}

  /** Starts it and resolves once it serves (mono time of that moment). */
  async start(): Promise<number> {
    for (let tries = 0; ; tries++) {
      try {
        return await this.startOnce();
      } catch (err) {
        // The port may still be held for a moment after a SIGKILL.
        if (tries >= 20 || this.ending) throw err;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }

  private startOnce(): Promise<number> {
    this.starts += 1;
    const { command, args: prefix } = serviceCommand(this.runtime);
    const args = [...prefix, "serve", "--lock-dir", this.lockDir, "--grpc-listen", this.address, "--http-listen", "127.0.0.1:0"];
    const child = new ChaosChild(command, args, join(this.logDir, `service.${this.starts}.stderr`), (c, code, signal, expected) => {
      this.history.record({ ev: "service-exit", servicePid: c.pid, code, signal, expected, stderrTail: expected ? undefined : c.stderrTail() });
      if (!expected && !this.ending && this.current === c) void this.start().catch(() => {});
    });
    this.current = child;
    this.history.record({ ev: "service-start", servicePid: child.pid });
    return new Promise((resolve, reject) => {
      let stdout = "";
      let served = false;
      const timer = setTimeout(() => {
        child.kill();
        reject(new Error(`the service did not serve within ${SERVE_TIMEOUT_MS} ms:\n${child.stderrTail()}`));
      }, SERVE_TIMEOUT_MS);
      child.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        stdout += chunk;
        const match = /mcp-lockd serving grpc=(\S+)/.exec(stdout);
        if (match && !served) {
          served = true;
          clearTimeout(timer);
          this.address = match[1]!;
          const at = mono();
          this.history.record({ ev: "service-serving", servicePid: child.pid }, at);
          resolve(at);
        }
      });
      void child.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`the service exited (${signal ?? code}) before serving:\n${child.stderrTail()}`));
      });
    });
  }

  /** SIGKILL, then a restart on the same port; resolves when it serves again. */
  async killAndRestart(downMs: number): Promise<number> {
    const child = this.current;
    child?.kill();
    await child?.exited;
    await new Promise((resolve) => setTimeout(resolve, downMs));
    return this.start();
  }

  /** SIGTERM, for the end of the campaign; true when it exited 0 in time. */
  async shutdown(timeoutMs = 10_000): Promise<boolean> {
    this.ending = true;
    const child = this.current;
    if (!child || !child.running) return false;
    child.terminate();
    const timer = setTimeout(() => child.kill(), timeoutMs);
    const { code } = await child.exited;
    clearTimeout(timer);
    return code === 0;
  }
}
