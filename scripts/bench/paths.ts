import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The repository root: the nearest directory above this file whose
 * package.json is mcp-lockd's. Found by walking up so that it holds both for
 * the compiled file (dist/scripts/bench/) and for the source.
 */
function findRepoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "mcp-lockd") return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no mcp-lockd package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

export const REPO_ROOT = findRepoRoot();
/** The CLI as users run it after `npm ci` (it loads dist/src). */
export const CLI_PATH = join(REPO_ROOT, "bin", "mcp-lockd.js");
/** Written by `npm run build:binary`; used only when it exists. */
export const BINARY_PATH = join(REPO_ROOT, "dist", "mcp-lockd");
/** etcd's wire-compatible .proto subset (also the source of src/gen/etcd). */
export const ETCD_PROTO_DIR = join(REPO_ROOT, "third_party", "etcd");
export const RESULTS_DIR = join(REPO_ROOT, "bench", "results");
/** The compiled load generator, run in child processes. */
export const LOAD_WORKER_PATH = fileURLToPath(new URL("./load-worker.js", import.meta.url));
