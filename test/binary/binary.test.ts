// The single executable (npm run build:binary), copied alone into an empty
// directory and run from there: it must need neither Node, nor node_modules,
// nor any file of the project beside it.
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import { access, copyFile, readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runLifecycle } from "../helpers/e2e-lifecycle.ts";
import { runProcess } from "../helpers/run-process.ts";
import { BUILT_BINARY_PATH, startServiceProcess } from "../helpers/service-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { openMcpSession } from "../mcp/mcp-session.ts";

const PACKAGE_JSON = new URL("../../../package.json", import.meta.url);
const BUILD_SCRIPT = fileURLToPath(new URL("../../../scripts/build-binary.mjs", import.meta.url));

let home: Awaited<ReturnType<typeof makeTempDir>>;
let binary: string;

/**
 * The runner's environment without MCP_LOCKD_* variables, which would configure
 * the service, and without NODE_OPTIONS, which the executable honours like node
 * (see the README) and which would make these results depend on the runner's.
 */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("MCP_LOCKD_") && key !== "NODE_OPTIONS"));
}

before(async () => {
  // `npm test` builds it first; run alone, this file builds it when it is missing.
  const built = process.env.MCP_LOCKD_TEST_BINARY ?? BUILT_BINARY_PATH;
  const missing = await access(built).then(
    () => false,
    () => true,
  );
  if (missing) {
    assert.equal(process.env.MCP_LOCKD_TEST_BINARY, undefined, `MCP_LOCKD_TEST_BINARY=${built} does not exist`);
    const build = await runProcess(process.execPath, [BUILD_SCRIPT], { timeoutMs: 120_000 });
    assert.equal(build.code, 0, `npm run build:binary failed:\n${build.stdout}\n${build.stderr}`);
  }
  home = await makeTempDir("mcp-lockd-binary-");
  binary = join(home.path, "mcp-lockd");
  await copyFile(built, binary);
  assert.deepEqual(await readdir(home.path), ["mcp-lockd"], "the binary is alone in its directory");
});

after(async () => {
  await home?.remove();
});

test("the binary alone: --help and --version (package.json's)", async () => {
  const help = await runProcess(binary, ["--help"], { cwd: home.path, env: cleanEnv() });
  assert.equal(help.code, 0, `--help exits 0 (stderr: ${help.stderr})`);
  assert.match(help.stdout, /Usage:\n {2}mcp-lockd serve/);
  assert.equal(help.stderr, "", "no experimental-SEA warning or other noise");

  const { version } = JSON.parse(await readFile(PACKAGE_JSON, "utf8")) as { version: string };
  const printed = await runProcess(binary, ["--version"], { cwd: home.path, env: cleanEnv() });
  assert.equal(printed.code, 0);
  assert.equal(printed.stdout.trim(), version);

  // Arguments are the program's, never Node's options.
  const usage = await runProcess(binary, ["--inspect"], { cwd: home.path, env: cleanEnv() });
  assert.equal(usage.code, 64, `an unknown flag is a usage error (stderr: ${usage.stderr})`);
  assert.match(usage.stderr, /unknown command "--inspect"/);
});

test("the binary alone serves: Acquire, KeepAlive, health, reflection, SIGKILL and restart with the lease kept, SIGTERM exits 0", { timeout: 60_000 }, async () => {
  await runLifecycle({ runtime: "binary", binary, cwd: home.path, env: cleanEnv() as Record<string, string> });
  assert.deepEqual(await readdir(home.path), ["mcp-lockd"], "the binary wrote nothing beside itself");
});

test("the binary alone runs `mcp`: the MCP SDK's client lists the tools, takes and releases a lock", async () => {
  const lockDir = await makeTempDir("mcp-lockd-binary-mcp-");
  const service = await startServiceProcess({ lockDir: lockDir.path, runtime: "binary", binary, cwd: home.path, env: cleanEnv() as Record<string, string> });
  try {
    const session = await openMcpSession(service.grpcAddress, "binary-check", [], { binary, cwd: home.path });
    try {
      const { tools } = await session.client.listTools();
      assert.deepEqual(tools.map((tool) => tool.name).sort(), ["lock_acquire", "lock_release", "lock_status"]);
      const grant = await session.call("lock_acquire", { resource: "alone" });
      assert.equal(grant.isError, undefined);
      assert.equal((grant.structuredContent as { fencing_token: number }).fencing_token, 1);
      assert.deepEqual((await session.call("lock_release", { resource: "alone" })).structuredContent, { resource: "alone", released: true });
    } finally {
      await session.close();
    }
  } finally {
    await service.stop();
    await lockDir.remove();
  }
  assert.deepEqual(await readdir(home.path), ["mcp-lockd"], "the binary wrote nothing beside itself");
});
