import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdir, readFile, symlink } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LockClient } from "../../src/index.ts";
import { startServiceFixture } from "../helpers/service-process.ts";
import { runProcess } from "../helpers/run-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

// examples/typescript as a user runs it: its own project with "mcp-lockd"
// in node_modules, compiled by tsc (which checks the package's types and
// lowers `await using` for Node 20), then run against a real service.

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const EXAMPLE = join(REPO, "examples", "typescript");
const TSC = join(REPO, "node_modules", "typescript", "bin", "tsc");

test("examples/typescript compiles against the package and runs against a real service", async () => {
  const fixture = await startServiceFixture();
  const project = await makeTempDir("mcp-lockd-example-ts-");
  const client = new LockClient({ address: fixture.service.grpcAddress });
  try {
    for (const file of ["package.json", "tsconfig.json", "main.ts"]) await copyFile(join(EXAMPLE, file), join(project.path, file));
    await mkdir(join(project.path, "node_modules"));
    // What `npm install mcp-lockd` would provide: the package, and its dependencies next to it.
    await symlink(REPO, join(project.path, "node_modules", "mcp-lockd"), "dir");
    await symlink(join(REPO, "node_modules", "@types"), join(project.path, "node_modules", "@types"), "dir");

    const build = await runProcess(process.execPath, [TSC, "-p", project.path], { timeoutMs: 60_000 });
    assert.equal(build.code, 0, `tsc failed:\n${build.stdout}${build.stderr}`);

    const report = join(project.path, "report.log");
    const run = await runProcess(process.execPath, [join(project.path, "dist", "main.js"), report], {
      cwd: project.path,
      env: { ...process.env, MCP_LOCKD_ADDRESS: fixture.service.grpcAddress },
      timeoutMs: 30_000,
    });
    assert.equal(run.code, 0, `the example failed:\n${run.stdout}${run.stderr}`);
    const lines = run.stdout.trim().split("\n");
    assert.match(lines[0] ?? "", /^acquired example-report as \S+:\d+, fencing token \d+$/);
    assert.equal(lines[1], "released");
    assert.equal(lines[2], "withLock wrote 4 lines in all");
    assert.match(lines[3] ?? "", /^example-busy is held by example-holder until \d{4}-\d\d-\d\dT[\d:.]+Z$/);

    const written = (await readFile(report, "utf8")).trim().split("\n");
    assert.equal(written.length, 4);
    const tokens = written.map((line) => BigInt(/^token=(\d+)/.exec(line)![1]!));
    assert.ok(tokens[3]! > tokens[0]!, "the second grant has a higher fencing token");
    // Everything was released on the way out.
    assert.deepEqual(await client.list("example-"), []);
  } finally {
    client.close();
    await project.remove();
    await fixture.close();
  }
});
