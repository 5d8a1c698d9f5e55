// examples/python as a user runs them: /usr/bin/python3 with PYTHONPATH
// pointing at clients/python (the install the README describes), from a
// scratch directory, against a real service.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LockClient } from "../../src/index.ts";
import { startServiceFixture } from "../helpers/service-process.ts";
import { runProcess } from "../helpers/run-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { PYTHON } from "../helpers/python.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const EXAMPLES = join(REPO, "examples", "python");
const PACKAGE = join(REPO, "clients", "python");

const pythonEnv = (extra: Record<string, string> = {}) => ({
  ...process.env,
  PYTHONPATH: PACKAGE,
  PYTHONDONTWRITEBYTECODE: "1",
  ...extra,
});

async function reportTokens(path: string): Promise<number[]> {
  const lines = (await readFile(path, "utf8")).trim().split("\n");
  assert.deepEqual(lines.map((line) => line.replace(/^token=\d+ /, "")), ["step 1", "step 2", "step 3"]);
  return lines.map((line) => Number(/^token=(\d+) /.exec(line)![1]));
}

test("examples/python/service_lock.py runs against a real service", async () => {
  const fixture = await startServiceFixture();
  const scratch = await makeTempDir("mcp-lockd-example-py-");
  const client = new LockClient({ address: fixture.service.grpcAddress });
  try {
    const report = join(scratch.path, "report.log");
    const run = await runProcess(PYTHON, [join(EXAMPLES, "service_lock.py"), report], {
      cwd: scratch.path,
      env: pythonEnv({ MCP_LOCKD_ADDRESS: fixture.service.grpcAddress }),
      timeoutMs: 60_000,
    });
    assert.equal(run.code, 0, `the example failed:\n${run.stdout}${run.stderr}`);
    const lines = run.stdout.trim().split("\n");
    assert.match(lines[0] ?? "", /^acquired example-report as \S+:\d+, fencing token \d+$/);
    assert.equal(lines[1], "released");
    assert.match(lines[2] ?? "", /^example-busy is held by example-holder until \d{4}-\d\d-\d\dT[\d:.]+Z$/);
    assert.equal(lines.length, 3);
    const tokens = await reportTokens(report);
    assert.equal(new Set(tokens).size, 1);
    assert.equal(String(tokens[0]), /fencing token (\d+)$/.exec(lines[0]!)![1]);
    // Everything was released on the way out; nothing was left in the scratch dir but the report.
    assert.deepEqual(await client.list("example-"), []);
    assert.deepEqual(await readdir(scratch.path), ["report.log"]);
  } finally {
    client.close();
    await scratch.remove();
    await fixture.close();
  }
});

test("examples/python/file_lock.py runs on the service's lock dir and takes turns with its clients", async () => {
  const fixture = await startServiceFixture();
  const scratch = await makeTempDir("mcp-lockd-example-py-");
  const client = new LockClient({ address: fixture.service.grpcAddress });
  try {
    // A service client held example-file first: the file protocol's token comes after its token.
    const before = await client.acquire("example-file", { holder: "ts-before", ttl: 10_000 });
    await before.release();

    const report = join(scratch.path, "report.log");
    const run = await runProcess(PYTHON, [join(EXAMPLES, "file_lock.py"), fixture.lockDir, report], {
      cwd: scratch.path,
      env: pythonEnv(),
      timeoutMs: 60_000,
    });
    assert.equal(run.code, 0, `the example failed:\n${run.stdout}${run.stderr}`);
    const lines = run.stdout.trim().split("\n");
    assert.match(lines[0] ?? "", /^acquired example-file as \S+:\d+, fencing token \d+$/);
    assert.equal(lines[1], "released");
    assert.match(lines[2] ?? "", /^example-busy is held by example-holder until \d{4}-\d\d-\d\dT[\d:.]+Z$/);
    const [token] = await reportTokens(report);
    assert.ok(token! > Number(before.fencingToken), `file token ${token}, service token ${before.fencingToken}`);

    // ... and the service's next grant comes after the file protocol's.
    const after = await client.acquire("example-file", { holder: "ts-after", ttl: 10_000 });
    assert.ok(Number(after.fencingToken) > token!);
    await after.release();
    assert.deepEqual(await client.list("example-"), []);
  } finally {
    client.close();
    await scratch.remove();
    await fixture.close();
  }
});
