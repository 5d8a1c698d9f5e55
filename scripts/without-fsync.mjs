// A preload for measurement only, never for a service anyone relies on:
// every fsync and fdatasync of the process returns at once, so nothing it
// writes is durable. What a service loaded this way does per second is the
// most any cheaper durable write (fewer fsyncs per grant, a grant in place)
// could give it: an upper bound, measured rather than estimated.
//
//   BENCH_MCP_LOCKD_DURABILITY=off node dist/scripts/bench/main.js --systems mcp-lockd,etcd --workloads 1,2,3
//
// (the bench preloads it into the measured service), or by hand:
// node --import ./scripts/without-fsync.mjs bin/mcp-lockd.js serve ...
// A renewal in place opens its file with O_DSYNC, which this does not
// remove; workloads 1 to 3 make no renewal.
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";

const done = (_fd, callback) => process.nextTick(callback, null);
fs.fsyncSync = () => {};
fs.fdatasyncSync = () => {};
fs.fsync = done;
fs.fdatasync = done;
// The named exports of node:fs (`import { fsyncSync } from "node:fs"`) follow.
syncBuiltinESMExports();
process.stderr.write("without-fsync.mjs: fsync and fdatasync are no-ops in this process; nothing it writes is durable (measurement only)\n");
