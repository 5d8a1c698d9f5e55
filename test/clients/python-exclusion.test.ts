// Mutual exclusion across every kind of participant at once, on one resource
// and one lock dir: Python FileLock processes (the file protocol alone, no
// service), a Python LockClient process and TypeScript LockClients (both
// through the service). Real processes, a real O_EXCL marker file.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { open, readFile, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { LockClient } from "../../src/client/index.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { startServiceProcess } from "../helpers/service-process.ts";
import { assertValidLockDir } from "../helpers/lease-file-schema.ts";
import { waitFor } from "../helpers/wait.ts";
import { PYTHON } from "./python-lease-driver.ts";

const CONTENDER_PY = fileURLToPath(new URL("../../../test/clients/contender.py", import.meta.url));
const RESOURCE = "shared";
const CYCLES = 10;

interface HoldRecord {
  who: string;
  fencing_token: number;
  start: number;
  end: number;
  violation?: string;
}

async function runContender(args: string[], children: Set<ChildProcess>): Promise<void> {
  const child = spawn(PYTHON, [CONTENDER_PY, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" } });
  children.add(child);
  let output = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  try {
    const [code, signal] = (await once(child, "exit")) as [number | null, NodeJS.Signals | null];
    assert.equal(code, 0, `contender.py ${args.join(" ")} ended with ${signal ?? code}:\n${output}`);
  } finally {
    clearTimeout(timer);
    children.delete(child);
  }
}

/** The TypeScript side: the package's LockClient, waiting in the service's queue. */
async function tsContender(address: string, who: string, marker: string): Promise<HoldRecord[]> {
  const client = new LockClient({ address });
  const records: HoldRecord[] = [];
  try {
    for (let i = 0; i < CYCLES; i++) {
      const lock = await client.acquire(RESOURCE, { holder: who, ttl: 10_000, wait: 60_000 });
      const start = Date.now();
      let violation: string | undefined;
      try {
        await (await open(marker, "wx")).close();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        violation = `${marker} already existed at the start of the critical section`;
      }
      await delay(Math.random() * 3);
      if (violation === undefined) await unlink(marker);
      const end = Date.now();
      if (lock.signal.aborted) violation = `${violation ?? ""} the lease was lost inside the critical section`.trim();
      await lock.release();
      records.push({ who, fencing_token: Number(lock.fencingToken), start, end, ...(violation ? { violation } : {}) });
      // Outside the lock, so the contenders interleave: long enough for a polling FileLock to find
      // the resource free now and then (the service grants its own waiters at once).
      await delay(Math.random() * 20);
    }
    return records;
  } finally {
    client.close();
  }
}

test("python FileLock processes, a python LockClient and TypeScript LockClients exclude each other on one resource", async (t) => {
  const dir = await makeTempDir();
  const lockDir = join(dir.path, "locks");
  const marker = join(dir.path, "critical");
  const children = new Set<ChildProcess>();
  const service = await startServiceProcess({ lockDir });
  try {
    const outs = { file1: join(dir.path, "file-1.jsonl"), file2: join(dir.path, "file-2.jsonl"), grpc: join(dir.path, "grpc.jsonl") };
    const python = Promise.all([
      runContender(["file", lockDir, RESOURCE, String(CYCLES), outs.file1, marker], children),
      runContender(["file", lockDir, RESOURCE, String(CYCLES), outs.file2, marker], children),
      runContender(["grpc", service.grpcAddress, RESOURCE, String(CYCLES), outs.grpc, marker], children),
    ]);
    python.catch(() => {}); // awaited below
    // Python starts slower than in-process clients, which could otherwise be done before it begins.
    const fenceExists = async () => (await stat(join(lockDir, `${RESOURCE}.lock.fence`)).catch(() => undefined)) !== undefined;
    await Promise.race([waitFor(fenceExists, "the first python grant", 20_000), python]);
    const [tsA, tsB] = await Promise.all([
      tsContender(service.grpcAddress, "ts-a", marker),
      tsContender(service.grpcAddress, "ts-b", marker),
      python,
    ]);
    const records: HoldRecord[] = [...tsA, ...tsB];
    for (const out of Object.values(outs)) {
      records.push(...(await readFile(out, "utf8")).trim().split("\n").map((line) => JSON.parse(line) as HoldRecord));
    }

    const perWho = new Map<string, number>();
    for (const r of records) perWho.set(r.who, (perWho.get(r.who) ?? 0) + 1);
    assert.equal(perWho.size, 5, `participants: ${[...perWho.keys()].join(", ")}`);
    for (const [who, count] of perWho) assert.equal(count, CYCLES, `${who} completed ${count} cycles`);
    assert.deepEqual(records.filter((r) => r.violation !== undefined), []);

    // Unique tokens; in token order the hold intervals follow each other, so tokens strictly
    // increase in grant order across the file protocol and the service.
    const byToken = [...records].sort((a, b) => a.fencing_token - b.fencing_token);
    const tokens = byToken.map((r) => r.fencing_token);
    assert.equal(new Set(tokens).size, records.length, `a token was granted twice: ${tokens.join(" ")}`);
    for (let i = 1; i < byToken.length; i++) {
      const [a, b] = [byToken[i - 1]!, byToken[i]!];
      assert.ok(a.end <= b.start, `token ${a.fencing_token} (${a.who}) held until ${a.end}, token ${b.fencing_token} (${b.who}) from ${b.start}`);
    }
    const kinds = byToken.map((r) => (r.who.startsWith("file-") ? "file" : "svc"));
    const handovers = kinds.filter((kind, i) => i > 0 && kind !== kinds[i - 1]).length;
    t.diagnostic(`grant order: ${byToken.map((r) => r.who.replace(/-\d+$/, "")).join(" ")}`);
    assert.ok(handovers >= 2, `only ${handovers} handovers between the file protocol and the service: ${kinds.join(" ")}`);
    assert.equal(await assertValidLockDir(lockDir), 0);
  } finally {
    for (const child of children) child.kill("SIGKILL");
    await service.stop();
    await dir.remove();
  }
});
