#!/usr/bin/env node
// Runs the compiled CLI (built by `npm run build`, which `npm ci` runs via prepare).
//
// CommonJS (bin/package.json), not an ES module: libuv reads
// UV_THREADPOOL_SIZE once, when its thread pool starts, and the ES module
// loader starts the pool (it reads module files with it) before any module's
// code runs. A CommonJS entry runs before that, so it can size the pool for
// the lease-file store (src/cli/thread-pool-size.ts, which the single
// executable imports first and which says why 16). An operator's value wins.
process.env.UV_THREADPOOL_SIZE ??= "16";

import("../dist/src/cli/main.js")
  .then(({ main }) => main(process.argv.slice(2)))
  .then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`mcp-lockd: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
