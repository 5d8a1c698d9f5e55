#!/usr/bin/env node
// npm run build:binary: builds dist/mcp-lockd, a single executable that needs
// neither Node nor node_modules next to it (a Node "single executable
// application"). Nothing is downloaded: the runtime is a copy of the Node that
// runs this script.
//
//   1. esbuild bundles src/cli/sea-entry.ts and every dependency into one
//      CommonJS file, dist/mcp-lockd.cjs (a SEA runs its main script as CJS).
//   2. `node --experimental-sea-config` turns it into a blob, with V8's code
//      cache so the executable does not compile the bundle at each start.
//   3. process.execPath is copied to dist/mcp-lockd and stripped of its
//      symbols (about 15 MB less; `strip` is in binutils).
//   4. postject writes the blob into the copy and flips the SEA fuse.
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const bundle = join(dist, "mcp-lockd.cjs");
const seaConfig = join(dist, "sea-config.json");
const blob = join(dist, "sea-prep.blob");
const binary = join(dist, "mcp-lockd");
// The sentinel that Node's SEA support looks for (fixed by Node, documented with SEA).
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const started = Date.now();
mkdirSync(dist, { recursive: true });

await build({
  entryPoints: [join(root, "src/cli/sea-entry.ts")],
  outfile: bundle,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  logLevel: "warning",
});

writeFileSync(
  seaConfig,
  `${JSON.stringify(
    {
      main: relative(root, bundle),
      output: relative(root, blob),
      disableExperimentalSEAWarning: true,
      useCodeCache: true,
    },
    null,
    2,
  )}\n`,
);
execFileSync(process.execPath, ["--experimental-sea-config", relative(root, seaConfig)], { cwd: root, stdio: "inherit" });

rmSync(binary, { force: true });
copyFileSync(process.execPath, binary);
chmodSync(binary, 0o755);
try {
  execFileSync("strip", [binary], { stdio: "inherit" });
} catch (err) {
  // Not fatal: the executable works unstripped, just bigger.
  process.stderr.write(`build-binary: strip failed (${err.message}); install binutils for a smaller binary\n`);
}

// postject's command line, in a child, so that its chatter (a progress line and
// a dozen harmless warnings about ELF notes it cannot name: "Can't find string
// offset for section name '.note.100'") is shown only when it fails.
const postject = spawnSync(
  process.execPath,
  [join(root, "node_modules/postject/dist/cli.js"), binary, "NODE_SEA_BLOB", blob, "--sentinel-fuse", SEA_FUSE],
  { encoding: "utf8" },
);
if (postject.status !== 0) {
  process.stderr.write(`${postject.stdout}${postject.stderr}`);
  throw new Error(`postject failed (exit ${postject.status ?? postject.signal})`);
}

const version = execFileSync(binary, ["--version"], { encoding: "utf8" }).trim();
process.stdout.write(
  `built ${relative(root, binary)} (mcp-lockd ${version}, Node ${process.version}): ${mb(statSync(binary).size)}; ` +
    `bundle ${relative(root, bundle)} ${mb(statSync(bundle).size)}; ${Date.now() - started} ms\n`,
);
