// The committed generated code (src/gen/) must be exactly what `buf generate`
// makes from proto/ with buf.gen.yaml, so nobody edits it by hand and nobody
// changes the .proto without regenerating.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, readdir } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { makeTempDir } from "../helpers/temp-dir.ts";

const run = promisify(execFile);
// dist/test/gen/ → the repository root.
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const COMMITTED = join(ROOT, "src", "gen");
const HINT = "src/gen/ is out of date with proto/ and buf.gen.yaml: run npm run gen and commit the result";

/** Every file under `dir`, as sorted '/'-separated paths relative to it. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)).split(sep).join("/"))
    .sort();
}

test("src/gen/ is byte-identical to a fresh `buf generate`", async () => {
  const out = await makeTempDir("mcp-lockd-gen-");
  try {
    // -o prepends its directory to the template's `out: src/gen`.
    try {
      await run("npx", ["--no-install", "buf", "generate", "--template", "buf.gen.yaml", "-o", out.path], {
        cwd: ROOT,
        timeout: 120_000,
        env: { ...process.env, BUF_LOG_FORMAT: "text" },
      });
    } catch (err) {
      const { stderr, message } = err as { stderr?: string; message: string };
      assert.fail(`buf generate failed (${message}):\n${stderr ?? ""}`);
    }
    const generatedDir = join(out.path, "src", "gen");
    const generated = await listFiles(generatedDir);
    const committed = await listFiles(COMMITTED);
    assert.ok(generated.length > 0, "buf generate produced no files");
    assert.deepEqual(committed, generated, `the file lists differ; ${HINT}`);
    for (const file of generated) {
      const [fresh, onDisk] = await Promise.all([readFile(join(generatedDir, file)), readFile(join(COMMITTED, file))]);
      assert.ok(fresh.equals(onDisk), `src/gen/${file} differs from what buf generates; ${HINT}`);
    }
  } finally {
    await out.remove();
  }
});
