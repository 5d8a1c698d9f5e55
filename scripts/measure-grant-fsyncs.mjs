#!/usr/bin/env node
// node scripts/measure-grant-fsyncs.mjs [seconds] [rounds]: whether a grant's
// three fsyncs (the fencing counter's dir, the new lease file, the lock dir;
// docs/protocol.md §5) could cost less by their order or by running at once.
// No service: the calls of a grant and a release, one resource, a fresh temp
// dir (so the bench's file system), interleaved rounds of:
//   serial   the protocol's order: counter rename, counter-dir fsync, temp
//            file write + fsync, link, lock-dir fsync (as LeaseFileStore does)
//   reorder  the temp file's fsync before the counter dir's (ext4 commits
//            the counter's rename with the file's inode, so the dir fsync
//            may find nothing left to commit)
//   together the counter dir's and the temp file's fsyncs at once on the
//            thread pool (one journal commit for both, if the disk merges them)
// then unlink (the release, no fsync). Prints cycles/s and the time of each
// step. Where every fsync costs a flush of the disk's write cache, all three
// come out alike: the grant's cost is its number of fsyncs.
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const seconds = Number(process.argv[2] ?? 3);
const rounds = Number(process.argv[3] ?? 3);
const dir = fs.mkdtempSync(join(tmpdir(), "mcp-lockd-grant-fsyncs-"));
const lease = join(dir, "r.lock");
const fence = join(dir, "r.lock.fence");
fs.mkdirSync(fence);
fs.writeFileSync(join(fence, "0"), "");
const document = JSON.stringify({ version: 3, resource: "r", holder: "h".repeat(24), ttl: 30 }).padEnd(420, " ");
let token = 0;

const now = () => performance.now();
const fsyncOnPool = (fd) => new Promise((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
const syncDir = (path) => {
  const fd = fs.openSync(path, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
};
const writeTemp = (path) => {
  const fd = fs.openSync(path, "wx", 0o644);
  fs.writeSync(fd, document);
  return fd;
};

async function cycle(order, times) {
  const next = token + 1;
  fs.renameSync(join(fence, String(token)), join(fence, String(next)));
  token = next;
  const temp = join(dir, `.r.${process.pid}.${next}.tmp`);
  let start = now();
  if (order === "serial") {
    syncDir(fence);
    const fd = writeTemp(temp);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  } else if (order === "reorder") {
    const fd = writeTemp(temp);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    syncDir(fence);
  } else {
    const dirFd = fs.openSync(fence, "r");
    const fd = writeTemp(temp);
    await Promise.all([fsyncOnPool(dirFd), fsyncOnPool(fd)]);
    fs.closeSync(fd);
    fs.closeSync(dirFd);
  }
  times.counterAndFile += now() - start;
  fs.linkSync(temp, lease);
  fs.unlinkSync(temp);
  start = now();
  syncDir(dir);
  times.lockDir += now() - start;
  fs.unlinkSync(lease);
}

const us = (ms, n) => `${Math.round((ms / n) * 1000)} µs`;
try {
  for (let round = 1; round <= rounds; round++) {
    for (const order of ["serial", "reorder", "together"]) {
      const times = { counterAndFile: 0, lockDir: 0 };
      let cycles = 0;
      const end = now() + seconds * 1000;
      while (now() < end) {
        await cycle(order, times);
        cycles++;
      }
      console.log(
        `round ${round} ${order.padEnd(8)} ${String(Math.round(cycles / seconds)).padStart(5)} cycles/s;` +
          ` counter + file fsyncs ${us(times.counterAndFile, cycles)}, lock-dir fsync ${us(times.lockDir, cycles)}`,
      );
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
