#!/usr/bin/env node
// node scripts/measure-fs-cycle.mjs [dir] [cycles]: what the file protocol's
// system calls for one acquire+release cycle cost on this disk, with no
// service and no gRPC: the floor under mcp-lockd's uncontended cycle. The
// same calls, in the same order, as LeaseFileStore makes them: guard
// mkdir/rmdir around the grant (read, fence read, temp file + fsync, rename,
// fsync of the dir) and around the release (read, unlink). `dir` defaults to
// a fresh temp dir (so, usually, the same file system as the bench's); ""
// means the default too.
// On a virtual disk the figure moves with the host's load: run it next to a
// bench to tell a slow disk from a slow service.
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = process.argv[2] || fs.mkdtempSync(join(tmpdir(), "mcp-lockd-fs-cycle-"));
const cycles = Number(process.argv[3] ?? 500);
fs.mkdirSync(dir, { recursive: true });
const lease = join(dir, "r.lock");
const guard = join(dir, "r.lock.guard");
const fence = join(dir, "r.lock.fence");
fs.writeFileSync(fence, JSON.stringify({ version: 1, resource: "r", fencing_token: 1000 }));
const document = JSON.stringify({ version: 1, resource: "r", holder: "h".repeat(24), ttl: 30 }, null, 2).padEnd(420, " ");

const readIfThere = (path) => {
  try {
    return fs.readFileSync(path, "utf8");
  } catch (err) {
    if (err.code !== "ENOENT") throw err;
    return undefined;
  }
};
const totals = { guard: 0, grant: 0, release: 0 };
const time = (key, work) => {
  const start = performance.now();
  work();
  totals[key] += performance.now() - start;
};

for (let i = 0; i < cycles; i++) {
  time("guard", () => fs.mkdirSync(guard));
  time("grant", () => {
    readIfThere(lease);
    readIfThere(fence);
    const temp = join(dir, `.r.${process.pid}.${i}.tmp`);
    const fd = fs.openSync(temp, "wx");
    fs.writeSync(fd, document);
    fs.fsyncSync(fd);
    fs.fstatSync(fd);
    fs.closeSync(fd);
    fs.renameSync(temp, lease);
    const dirFd = fs.openSync(dir, "r");
    fs.fsyncSync(dirFd);
    fs.closeSync(dirFd);
  });
  time("guard", () => fs.rmdirSync(guard));
  time("guard", () => fs.mkdirSync(guard));
  time("release", () => {
    readIfThere(lease);
    fs.unlinkSync(lease);
  });
  time("guard", () => fs.rmdirSync(guard));
}

const per = (ms) => `${(ms / cycles).toFixed(3)} ms`;
const all = totals.guard + totals.grant + totals.release;
console.log(
  `${dir}: per cycle ${per(all)} (${Math.round((cycles * 1000) / all)} cycles/s of file work alone): ` +
    `grant ${per(totals.grant)}, release ${per(totals.release)}, guards ${per(totals.guard)}`,
);
if (!process.argv[2]) fs.rmSync(dir, { recursive: true, force: true });
