// The committed generated code (src/gen/) must be exactly what `npm run gen`
// makes from proto/ (`buf generate` with buf.gen.yaml, then the embedded
// descriptor set), so nobody edits it by hand and nobody changes the .proto
// without regenerating: reflection would describe another API than the one
// the code serves.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, readdir } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { DESCRIPTOR_SET_BASE64 } from "../../src/gen/descriptor-set.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

const run = promisify(execFile);
// dist/test/gen/ → the repository root.
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const COMMITTED = join(ROOT, "src", "gen");
const HINT = "src/gen/ is out of date with proto/ and buf.gen.yaml: run npm run gen and commit the result";
const EMBED_SCRIPT = join(ROOT, "scripts", "embed-descriptor-set.mjs");

/** Every file under `dir`, as sorted '/'-separated paths relative to it. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)).split(sep).join("/"))
    .sort();
}

test("src/gen/ (the code and descriptor-set.ts) is byte-identical to a fresh `npm run gen`", async () => {
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
    try {
      await run(process.execPath, [EMBED_SCRIPT, join(generatedDir, "descriptor-set.ts")], { cwd: ROOT, timeout: 120_000 });
    } catch (err) {
      const { stderr, message } = err as { stderr?: string; message: string };
      assert.fail(`scripts/embed-descriptor-set.mjs failed (${message}):\n${stderr ?? ""}`);
    }
    const generated = await listFiles(generatedDir);
    const committed = await listFiles(COMMITTED);
    assert.ok(generated.length > 0, "buf generate produced no files");
    assert.deepEqual(committed, generated, `the file lists differ; ${HINT}`);
    for (const file of generated) {
      const [fresh, onDisk] = await Promise.all([readFile(join(generatedDir, file)), readFile(join(COMMITTED, file))]);
      assert.ok(fresh.equals(onDisk), `src/gen/${file} differs from what npm run gen makes; ${HINT}`);
    }
  } finally {
    await out.remove();
  }
});

test("the embedded descriptor set has every .proto under proto/, with imports and comments, and stays small", async () => {
  const bytes = Buffer.from(DESCRIPTOR_SET_BASE64, "base64");
  // Source info roughly sextuples the size; past this, drop it (--exclude-source-info).
  assert.ok(bytes.length < 100_000, `the descriptor set is ${bytes.length} bytes`);
  const set = fromBinary(FileDescriptorSetSchema, bytes);
  const protos = (await listFiles(join(ROOT, "proto"))).filter((file) => file.endsWith(".proto"));
  const embedded = set.file.map((file) => file.name);
  for (const proto of protos) assert.ok(embedded.includes(proto), `${proto} is embedded (have: ${embedded.join(", ")})`);
  for (const wkt of ["google/protobuf/duration.proto", "google/protobuf/timestamp.proto"]) {
    assert.ok(embedded.includes(wkt), `the import ${wkt} is embedded`);
  }
  // createFileRegistry needs each file after its imports, and resolves every type.
  const registry = createFileRegistry(set);
  assert.ok(registry.getService("mcplockd.v1.LockService"));
  const lock = set.file.find((file) => file.name === "mcplockd/v1/lock.proto");
  assert.ok(lock?.sourceCodeInfo?.location.some((l) => l.leadingComments.trim() !== ""), "lock.proto keeps its comments");
});
