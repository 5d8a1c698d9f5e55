#!/usr/bin/env node
// node scripts/measure-inplace-calls.mjs [MODE] [RATE] [SECONDS]: the file
// calls of protocol version 3's renewal in place (docs/protocol.md §5) alone,
// no service: 10,000 lease-sized files in a temp dir under /var/tmp, RATE
// renewals a second (default 3,000) spread over them for SECONDS (default 8),
// each a durable O_DSYNC write of 300 bytes at offset 0 on libuv's thread
// pool (run with UV_THREADPOOL_SIZE=16, as the service does). MODE says how
// the file is reached:
//   open:   open, fstat, write, fstat, close for each renewal, the open and
//           the checks synchronous (what the service does);
//   kept:   every file opened once and kept open: write, fstat;
//   pooled: all five calls on the thread pool.
// Prints renewals done per second, latency p50/p99/max, the largest
// event-loop delay, and the process's CPU (main thread and pool together).
import fs from "node:fs";

const [mode = "open", rate = 3000, seconds = 8] = [process.argv[2], ...process.argv.slice(3).map(Number)];
if (!["open", "kept", "pooled"].includes(mode)) {
  process.stderr.write("usage: node scripts/measure-inplace-calls.mjs [open|kept|pooled] [RATE] [SECONDS]\n");
  process.exit(64);
}
const FILES = 10_000;
const FLAGS = fs.constants.O_RDWR | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | fs.constants.O_DSYNC;
const dir = fs.mkdtempSync("/var/tmp/mcp-lockd-inplace-");
const paths = Array.from({ length: FILES }, (_, i) => `${dir}/r${i}.lock`);
for (const path of paths) fs.writeFileSync(path, "x".repeat(300));
const kept = mode === "kept" ? paths.map((path) => fs.openSync(path, FLAGS)) : [];
const bytes = Buffer.alloc(300, "y");
const pooled = (call, ...args) => new Promise((resolve, reject) => call(...args, (err, value) => (err ? reject(err) : resolve(value))));

async function renew(i) {
  if (mode === "kept") {
    await pooled(fs.write, kept[i], bytes, 0, bytes.length, 0);
    fs.fstatSync(kept[i]);
    return;
  }
  const fd = mode === "open" ? fs.openSync(paths[i], FLAGS) : await pooled(fs.open, paths[i], FLAGS);
  try {
    if (mode === "open") fs.fstatSync(fd);
    else await pooled(fs.fstat, fd);
    await pooled(fs.write, fd, bytes, 0, bytes.length, 0);
    if (mode === "open") fs.fstatSync(fd);
    else await pooled(fs.fstat, fd);
  } finally {
    if (mode === "open") fs.closeSync(fd);
    else await pooled(fs.close, fd);
  }
}

const latencies = [];
let maxDelay = 0;
let last = performance.now();
const delayTimer = setInterval(() => {
  const now = performance.now();
  maxDelay = Math.max(maxDelay, now - last - 5);
  last = now;
}, 5);
const cpuBefore = process.cpuUsage();
const start = performance.now();
const inFlight = new Set();
let sent = 0;
await new Promise((done) => {
  const tick = setInterval(() => {
    const due = Math.floor(((performance.now() - start) / 1000) * rate);
    for (; sent < due; sent++) {
      const began = performance.now();
      const running = renew((sent * 7919) % FILES).then(() => {
        latencies.push(performance.now() - began);
        inFlight.delete(running);
      });
      inFlight.add(running);
    }
    if (performance.now() - start > seconds * 1000) {
      clearInterval(tick);
      void Promise.all(inFlight).then(done);
    }
  }, 2);
});
clearInterval(delayTimer);
const cpu = process.cpuUsage(cpuBefore);
const elapsed = (performance.now() - start) / 1000;
latencies.sort((a, b) => a - b);
const at = (q) => latencies[Math.floor(latencies.length * q)].toFixed(2);
console.log(
  `${mode}: ${Math.round(latencies.length / elapsed)} renewals/s, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${latencies.at(-1).toFixed(1)} ms, ` +
    `event-loop delay max ${maxDelay.toFixed(1)} ms, CPU ${Math.round((cpu.user + cpu.system) / 1e4 / elapsed)} % of a core`,
);
for (const fd of kept) fs.closeSync(fd);
fs.rmSync(dir, { recursive: true, force: true });
