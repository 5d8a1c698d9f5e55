#!/usr/bin/env node
// Runs the compiled CLI (built by `npm run build`, which `npm ci` runs via prepare).
// First: sets the thread pool size before anything can start the pool.
import "../dist/src/cli/thread-pool-size.js";
import { main } from "../dist/src/cli/main.js";

process.exitCode = await main(process.argv.slice(2));
