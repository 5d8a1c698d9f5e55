// The service's sources run under Deno (npm run start:deno, through
// scripts/deno-run.sh with least permissions): type-checking with `deno
// check`, the command line, and the same deployment life as the single
// executable's. The other e2e files also run against Deno in `npm test`
// (MCP_LOCKD_TEST_RUNTIME=deno, see the README).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runLifecycle } from "../helpers/e2e-lifecycle.ts";
import { TestLockClient } from "../helpers/lock-client.ts";
import { runProcess } from "../helpers/run-process.ts";
import { DENO_RUN_PATH } from "../helpers/service-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { withTimeout } from "../helpers/wait.ts";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const DENO = join(ROOT, "node_modules/.bin/deno");
const PACKAGE_JSON = join(ROOT, "package.json");

/** The runner's environment without MCP_LOCKD_* variables, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("MCP_LOCKD_") && value !== undefined) env[key] = value;
  return { ...env, ...extra };
}

test("deno check: the sources behind the Deno entry type-check under Deno", { timeout: 120_000 }, async () => {
  const result = await runProcess(DENO, ["check", "--quiet", "src/cli/deno-entry.ts"], { cwd: ROOT, timeoutMs: 110_000 });
  assert.equal(result.code, 0, `deno check failed:\n${result.stdout}\n${result.stderr}`);
});

test("under Deno: --help and --version (package.json's)", { timeout: 60_000 }, async () => {
  const help = await runProcess(DENO_RUN_PATH, ["--help"], { env: cleanEnv() });
  assert.equal(help.code, 0, `--help exits 0 (stderr: ${help.stderr})`);
  assert.match(help.stdout, /Usage:\n {2}mcp-lockd serve/);
  const { version } = JSON.parse(await readFile(PACKAGE_JSON, "utf8")) as { version: string };
  const printed = await runProcess(DENO_RUN_PATH, ["--version"], { env: cleanEnv() });
  assert.equal(printed.code, 0, `--version exits 0 (stderr: ${printed.stderr})`);
  assert.equal(printed.stdout.trim(), version);
});

// deno-run.sh grants read and write in the lock dir only, the network on the
// listen hosts only, the environment and the host name: the service runs on that.
test("under Deno: serves, keeps the lease across SIGKILL and restart, SIGTERM exits 0", { timeout: 90_000 }, async () => {
  await runLifecycle({ runtime: "deno", env: cleanEnv() });
});

test("npm run start:deno with no flags serves on the defaults (here set by environment) and stops on SIGTERM", { timeout: 60_000 }, async () => {
  const temp = await makeTempDir("mcp-lockd-start-deno-");
  const lockDir = join(temp.path, "locks");
  // npm passes SIGTERM on to its child, which must therefore be Deno itself: the
  // script is exec'ed by npm's shell and execs Deno in turn. In a process group
  // of its own, so that the clean-up can kill whatever is left (and a Deno that
  // outlived npm cannot hold the output pipes open and hang the runner).
  const child = spawn("npm", ["run", "--silent", "start:deno"], {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: cleanEnv({ MCP_LOCKD_DIR: lockDir, MCP_LOCKD_GRPC_LISTEN: "127.0.0.1:0", MCP_LOCKD_HTTP_LISTEN: "127.0.0.1:0" }),
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  let client: TestLockClient | undefined;
  try {
    const serving = await withTimeout(
      new Promise<RegExpExecArray>((resolve, reject) => {
        child.stdout!.on("data", () => {
          const match = /mcp-lockd serving grpc=(\S+) http=(\S+) lock-dir=(\S+)/.exec(stdout);
          if (match) resolve(match);
        });
        void exited.then(([code]) => reject(new Error(`npm run start:deno exited (${code}) before serving:\n${stderr}`)));
      }),
      30_000,
      "npm run start:deno to serve",
    );
    assert.equal(serving[3], lockDir);
    client = new TestLockClient(serving[1]!);
    const { lease } = await client.acquire({ resource: "start-deno", holder: "npm" });
    assert.ok(lease);
    child.kill("SIGTERM");
    const [code, signal] = await withTimeout(exited, 15_000, "npm run start:deno to exit after SIGTERM");
    assert.equal(signal, null, `npm exited by ${signal}`);
    assert.equal(code, 0, `exit code after SIGTERM (stderr:\n${stderr})`);
    assert.match(stderr, /SIGTERM: shutting down/, "the signal reached the service itself");
  } finally {
    client?.close();
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // the group is gone: nothing was left running
    }
    await temp.remove();
  }
});
