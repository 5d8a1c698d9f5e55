import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runProcess } from "../helpers/run-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

// The package's entry points as users import them: "mcp-lockd" is the client,
// "mcp-lockd/server" embeds the service (package.json "exports").

const REPO = fileURLToPath(new URL("../../../", import.meta.url));

const CLIENT_EXPORTS = [
  "AccessDeniedError",
  "InvalidArgumentError",
  "LeaseLostError",
  "Lock",
  "LockClient",
  "LockClientError",
  "ResourceBusyError",
  "UnavailableError",
  "WatcherTooSlowError",
];

// A variable, so that tsc does not resolve it before dist/ exists.
const PACKAGE: string = "mcp-lockd";

test("self-reference: import 'mcp-lockd' is the client, 'mcp-lockd/server' the service", async () => {
  const client = (await import(PACKAGE)) as Record<string, unknown>;
  assert.deepEqual(Object.keys(client).sort(), CLIENT_EXPORTS);
  const server = (await import(`${PACKAGE}/server`)) as Record<string, unknown>;
  for (const name of ["startService", "LockManager", "LeaseFileStore", "ResourceBusyError", "LeaseNotFoundError"]) {
    assert.equal(typeof server[name], "function", name);
  }
  assert.notEqual(server.ResourceBusyError, client.ResourceBusyError, "the service's errors are not the client's");
});

test("from another project's node_modules, as after npm install", async () => {
  const project = await makeTempDir("mcp-lockd-import-");
  try {
    await mkdir(join(project.path, "node_modules"));
    await symlink(REPO, join(project.path, "node_modules", "mcp-lockd"), "dir");
    await writeFile(join(project.path, "package.json"), JSON.stringify({ type: "module" }));
    await writeFile(
      join(project.path, "main.js"),
      [
        `import * as client from "mcp-lockd";`,
        `import { startService } from "mcp-lockd/server";`,
        // The README's generated-stub import keeps working.
        `import { LockServiceClient } from "mcp-lockd/dist/src/gen/mcplockd/v1/lock.js";`,
        `const c = new client.LockClient({ address: "127.0.0.1:1" });`,
        `const err = await c.list().catch((e) => e);`,
        `c.close();`,
        `console.log(JSON.stringify({ names: Object.keys(client).sort(), startService: typeof startService,`,
        `  stub: typeof LockServiceClient, unavailable: err instanceof client.UnavailableError }));`,
      ].join("\n"),
    );
    const run = await runProcess(process.execPath, [join(project.path, "main.js")], { cwd: project.path, timeoutMs: 20_000 });
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout), {
      names: CLIENT_EXPORTS,
      startService: "function",
      stub: "function",
      unavailable: true,
    });
  } finally {
    await project.remove();
  }
});
