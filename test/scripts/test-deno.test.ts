// scripts/test-deno.mjs (npm run test:deno): a run that failed because the
// service under Deno aborted in nghttp2 is run once more for its failed
// files; any other failure, or the same one twice, fails.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runProcess } from "../helpers/run-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

const SCRIPT = fileURLToPath(new URL("../../../scripts/test-deno.mjs", import.meta.url));
const ABORT = "deno: nghttp2/lib/nghttp2_session.c:2402: int find_stream_on_goaway_func(void *, void *): Assertion `stream->closed_next == NULL' failed.";

/**
 * A test file whose one test fails on its first `failures` runs, printing
 * `line` each time; it counts its runs in the file COUNTER (replaced below).
 */
function testFile(failures: number, line: string): string {
  return `import { test } from "node:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
test("may fail", () => {
  const seen = existsSync("COUNTER") ? Number(readFileSync("COUNTER", "utf8")) : 0;
  writeFileSync("COUNTER", String(seen + 1));
  if (seen >= ${failures}) return;
  console.log(${JSON.stringify(`# ${line}`)});
  throw new Error("failed on run " + (seen + 1));
});
`;
}

/** Runs the script on the given test files (name → source) in a temp dir; `runs(name)` is how often that file ran. */
async function runScript(t: TestContext, files: Record<string, string>): Promise<{ code: number | null; stderr: string; runs: (name: string) => Promise<number> }> {
  const dir = await makeTempDir("test-deno-");
  t.after(() => dir.remove());
  const paths: string[] = [];
  for (const [name, source] of Object.entries(files)) {
    const path = join(dir.path, `${name}.test.js`);
    await writeFile(path, source.replaceAll("COUNTER", join(dir.path, `${name}.count`)));
    paths.push(path);
  }
  // As npm runs it: not as a child of this `node --test`, which would take
  // over the nested run's reporting (and exit code) through this variable.
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  const result = await runProcess(process.execPath, [SCRIPT, ...paths], { env, timeoutMs: 60_000 });
  return {
    code: result.code,
    stderr: result.stderr,
    runs: async (name) => Number(await readFile(join(dir.path, `${name}.count`), "utf8")),
  };
}

test("a failure with Deno's nghttp2 abort is run once more, and passes if the file passes then", async (t) => {
  const result = await runScript(t, { aborted: testFile(1, ABORT), fine: testFile(0, "") });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /aborted in nghttp2 \(denoland\/deno#36788\).*1 file\(s\) with a failure once more: .*aborted\.test\.js/s);
  assert.equal(await result.runs("aborted"), 2, "the failed file ran twice");
  assert.equal(await result.runs("fine"), 1, "a file that passed is not run again");
});

test("a failure without that abort fails at once, and nothing is run again", async (t) => {
  const result = await runScript(t, { plain: testFile(1, "an ordinary failure") });
  assert.equal(result.code, 1);
  assert.doesNotMatch(result.stderr, /once more/);
  assert.equal(await result.runs("plain"), 1);
});

test("the abort twice fails", async (t) => {
  const result = await runScript(t, { twice: testFile(2, ABORT) });
  assert.equal(result.code, 1);
  assert.equal(await result.runs("twice"), 2);
});
