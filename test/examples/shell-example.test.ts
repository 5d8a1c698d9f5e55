// examples/shell as a user runs it: `mcp-lockd` on PATH (the CLI from this
// checkout, or the single executable under MCP_LOCKD_TEST_RUNTIME=binary),
// MCP_LOCKD_ADDRESS pointing at a real service.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BUILT_BINARY_PATH, CLI_PATH, startServiceFixture, testRuntime } from "../helpers/service-process.ts";
import { runProcess } from "../helpers/run-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { cliEnv } from "../cli/client-cli.ts";

const EXAMPLES = fileURLToPath(new URL("../../../examples/shell/", import.meta.url));

/** A bin dir whose `mcp-lockd` is the CLI under test. */
async function binDirWithCli(dir: string): Promise<string> {
  const bin = join(dir, "bin");
  await mkdir(bin);
  const target = join(bin, "mcp-lockd");
  if (testRuntime() === "binary") {
    await symlink(process.env.MCP_LOCKD_TEST_BINARY ?? BUILT_BINARY_PATH, target);
  } else {
    await writeFile(target, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI_PATH)} "$@"\n`);
    await chmod(target, 0o755);
  }
  return bin;
}

test("examples/shell: deploy-serialized.sh runs two deployments one at a time, and acquire-release.sh holds a lock across steps", async () => {
  const fixture = await startServiceFixture();
  const work = await makeTempDir("mcp-lockd-example-sh-");
  try {
    const bin = await binDirWithCli(work.path);
    const env = cliEnv({ MCP_LOCKD_ADDRESS: fixture.service.grpcAddress, PATH: `${bin}:${process.env.PATH ?? ""}` });

    const log = join(work.path, "deploy.log");
    const serialized = await runProcess("sh", [join(EXAMPLES, "deploy-serialized.sh"), log], { env, cwd: work.path, timeoutMs: 60_000 });
    assert.equal(serialized.code, 0, `deploy-serialized.sh failed:\n${serialized.stdout}\n${serialized.stderr}`);
    const lines = (await readFile(log, "utf8")).trim().split("\n");
    assert.equal(lines.length, 4, lines.join("\n"));
    assert.match(lines[0]!, /^start job-1 token=\d+$/);
    assert.equal(lines[1], "end job-1", "job 1 finished before job 2 started");
    assert.match(lines[2]!, /^start job-2 token=\d+$/);
    assert.equal(lines[3], "end job-2");
    const [first, second] = [lines[0]!, lines[2]!].map((line) => BigInt(/token=(\d+)/.exec(line)![1]!));
    assert.ok(second! > first!, "the second grant has the higher fencing token");
    assert.match(serialized.stdout, /^RESOURCE +HOLDER .*\ndeploy +deploy-job-\d /m, "the status table was printed");
    assert.match(serialized.stderr, /mcp-lockd run: waiting for "deploy": held by "deploy-job-1"/, "job 2 said whom it waited for");

    const steps = await runProcess("sh", [join(EXAMPLES, "acquire-release.sh")], { env, cwd: work.path, timeoutMs: 60_000 });
    assert.equal(steps.code, 0, `acquire-release.sh failed:\n${steps.stdout}\n${steps.stderr}`);
    assert.match(steps.stdout, /^holding migrations with fencing token \d+ until \d{4}-\d\d-\d\dT[\d:.]+Z$/m);
    assert.match(steps.stdout, /migration step 3/);
    assert.match(steps.stdout, /^migrations +migrate-script-\d+ /m, "held while the script ran");
    assert.deepEqual((await fixture.client.listLocks()).locks, [], "both scripts released what they held");
  } finally {
    await work.remove();
    await fixture.close();
  }
});
