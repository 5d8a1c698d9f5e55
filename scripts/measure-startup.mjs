#!/usr/bin/env node
// node scripts/measure-startup.mjs [runs]: how big each way of shipping
// mcp-lockd is and how long it takes from spawn to its "mcp-lockd serving"
// line (lease files loaded, both ports bound), median of `runs` (default 5)
// after one unmeasured warm-up (which fills Deno's compile cache and the OS
// page cache). Also the resident memory once serving. Needs `npm run build`
// and `npm run build:binary` first. Each service runs on ports 0 with a fresh
// lock dir and is stopped with SIGTERM.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const runs = Number(process.argv[2] ?? 5);
/** Size of a file, or of everything under a directory. */
const bytes = (path) => {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.size;
  return readdirSync(path).reduce((sum, name) => sum + bytes(join(path, name)), 0);
};
const mb = (path) => `${(bytes(path) / 1024 / 1024).toFixed(1)} MB`;

const ways = [
  { name: "single executable (dist/mcp-lockd)", command: join(root, "dist/mcp-lockd"), args: [], size: `${mb(join(root, "dist/mcp-lockd"))}` },
  {
    name: "node on the bundle (dist/mcp-lockd.cjs)",
    command: process.execPath,
    args: [join(root, "dist/mcp-lockd.cjs")],
    size: `${mb(join(root, "dist/mcp-lockd.cjs"))} + node ${mb(process.execPath)}`,
  },
  { name: "node bin/mcp-lockd.js (npm install)", command: process.execPath, args: [join(root, "bin/mcp-lockd.js")], size: `dist/src ${mb(join(root, "dist/src"))} + node_modules + node` },
  {
    name: "Deno on src/ (npm run start:deno)",
    command: join(root, "scripts/deno-run.sh"),
    args: [],
    size: `src/ ${mb(join(root, "src"))} + node_modules + deno ${mb(join(root, "node_modules/deno/deno"))}`,
  },
];

/** Spawns `serve`, resolves with ms to the serving line and the RSS then; stops it. */
async function once_(way) {
  const dir = mkdtempSync(join(tmpdir(), "mcp-lockd-startup-"));
  const started = process.hrtime.bigint();
  const child = spawn(way.command, [...way.args, "serve", "--lock-dir", dir, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = once(child, "exit");
  try {
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk) => (stderr += chunk));
    const ms = await new Promise((resolve, reject) => {
      let stdout = "";
      child.stdout.setEncoding("utf8").on("data", (chunk) => {
        stdout += chunk;
        if (/mcp-lockd serving /.test(stdout)) resolve(Number(process.hrtime.bigint() - started) / 1e6);
      });
      void exited.then(() => reject(new Error(`${way.name} exited before serving:\n${stderr}`)));
    });
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1] ?? NaN);
    return { ms, rssMb: rssKb / 1024 };
  } finally {
    child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
process.stdout.write(`| how | size | start to serving, median of ${runs} (min–max) | RSS serving |\n| --- | --- | --- | --- |\n`);
for (const way of ways) {
  await once_(way); // warm-up
  const samples = [];
  for (let i = 0; i < runs; i++) samples.push(await once_(way));
  const times = samples.map((s) => s.ms);
  process.stdout.write(
    `| ${way.name} | ${way.size} | ${median(times).toFixed(0)} ms (${Math.min(...times).toFixed(0)}–${Math.max(...times).toFixed(0)}) | ${median(samples.map((s) => s.rssMb)).toFixed(0)} MB |\n`,
  );
}
