// A contention worker for test/grpc/mutual-exclusion.test.ts, run as its own
// process (compiled to dist/test/grpc/contention-worker.js):
//
//   node contention-worker.js <grpc-address> <work-dir> <lock-dir> <worker-name> <cycles> <wait|try>
//
// It connects, prints "ready", waits for "go" on stdin, then runs <cycles>
// rounds of Acquire("shared") → critical section → Release. "wait" mode waits
// in the queue (wait_timeout 30 s); "try" mode tries once and retries on
// ABORTED. The critical section takes <work-dir>/critical with O_EXCL (EEXIST
// means two holders overlap), checks that the lease file on disk names this
// worker, appends to <work-dir>/shared.log, and pauses 0–3 ms. Every round is
// written as one JSON line to <work-dir>/<worker-name>.jsonl. Exit code 0 only
// when all rounds were done; problems inside the critical section are recorded
// as `violations` in the round's line (the test asserts there are none).

import { createHash } from "node:crypto";
import { appendFile, open, unlink } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { status } from "@grpc/grpc-js";
import { assertValidLeaseFile } from "../helpers/lease-file-schema.ts";
import { isServiceError, TestLockClient } from "../helpers/lock-client.ts";

export interface CycleRecord {
  worker: string;
  mode: "wait" | "try";
  cycle: number;
  fencing_token: number;
  start: number;
  end: number;
  /** Acquire calls this round took (try mode retries on ABORTED). */
  attempts: number;
  violations: string[];
}

const RESOURCE = "shared";
const TTL = { seconds: 10, nanos: 0 };
const WAIT = { seconds: 30, nanos: 0 };
/** Try mode gives up (and exits 1) after this long without a grant. */
const TRY_GIVE_UP_MS = 60_000;

async function main(): Promise<number> {
  const [address, workDir, lockDir, worker, cyclesText, modeText] = process.argv.slice(2);
  const cycles = Number(cyclesText);
  if (!address || !workDir || !lockDir || !worker || !Number.isInteger(cycles) || (modeText !== "wait" && modeText !== "try")) {
    process.stderr.write(`usage: contention-worker <grpc-address> <work-dir> <lock-dir> <worker> <cycles> <wait|try>\n`);
    return 64;
  }
  const mode: "wait" | "try" = modeText;
  const marker = join(workDir, "critical");
  const sharedLog = join(workDir, "shared.log");
  const recordsFile = join(workDir, `${worker}.jsonl`);
  const leaseFile = join(lockDir, `${RESOURCE}.lock`);
  const holder = `worker-${worker}-pid-${process.pid}`;

  const client = new TestLockClient(address);
  try {
    // Connect before the start signal, so every worker starts contending at once.
    await client.listLocks();
    process.stdout.write("ready\n");
    await waitForGo();

    for (let cycle = 0; cycle < cycles; cycle++) {
      const { leaseId, fencingToken, attempts } = await acquire(client, mode, holder);
      const start = Date.now();
      const violations: string[] = [];

      // (a) exclusive marker: EEXIST means someone else is inside too.
      let ownMarker = false;
      try {
        const handle = await open(marker, "wx");
        await handle.close();
        ownMarker = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        violations.push(`marker ${marker} already existed at token ${fencingToken}: another holder is inside`);
      }
      // The lease file must name this lease while we hold it.
      try {
        const doc = await assertValidLeaseFile(leaseFile);
        const hash = createHash("sha256").update(leaseId).digest("hex");
        if (doc.fencing_token !== fencingToken || doc.holder !== holder || doc.lease_id_sha256 !== hash) {
          violations.push(
            `lease file shows holder ${JSON.stringify(doc.holder)} token ${String(doc.fencing_token)}, expected ${holder} token ${fencingToken}`,
          );
        }
      } catch (err) {
        violations.push(`lease file ${leaseFile} unusable while held: ${(err as Error).message}`);
      }
      // (b) shared log, (c) a short random pause.
      await appendFile(sharedLog, `${fencingToken} ${worker} ${cycle}\n`);
      const pause = Math.floor(Math.random() * 4);
      if (pause > 0) await sleep(pause);
      // (d) leave.
      if (ownMarker) await unlink(marker);
      const end = Date.now();

      const released = await client.release(leaseId);
      if (!released.released) violations.push(`release of token ${fencingToken} answered released=false`);
      const record: CycleRecord = { worker, mode, cycle, fencing_token: fencingToken, start, end, attempts, violations };
      await appendFile(recordsFile, JSON.stringify(record) + "\n");
    }
    return 0;
  } finally {
    client.close();
  }
}

async function acquire(
  client: TestLockClient,
  mode: "wait" | "try",
  holder: string,
): Promise<{ leaseId: string; fencingToken: number; attempts: number }> {
  const giveUpAt = Date.now() + TRY_GIVE_UP_MS;
  for (let attempts = 1; ; attempts++) {
    try {
      const { lease } = await client.acquire(
        mode === "wait"
          ? { resource: RESOURCE, holder, ttl: TTL, waitTimeout: WAIT }
          : { resource: RESOURCE, holder, ttl: TTL },
        { deadlineMs: 45_000 },
      );
      if (!lease) throw new Error("Acquire answered without a lease");
      return { leaseId: lease.leaseId, fencingToken: lease.fencingToken, attempts };
    } catch (err) {
      const retry = mode === "try" && isServiceError(err) && err.code === status.ABORTED && Date.now() < giveUpAt;
      if (!retry) throw err;
      // Small random back-off so try-once callers keep probing a busy resource.
      await sleep(Math.floor(Math.random() * 3));
    }
  }
}

function waitForGo(): Promise<void> {
  return new Promise((resolve, reject) => {
    let input = "";
    const onData = (chunk: string) => {
      input += chunk;
      if (!input.includes("go\n")) return;
      cleanup();
      resolve();
    };
    const onEnd = () => {
      cleanup();
      reject(new Error("stdin ended before the start signal"));
    };
    const cleanup = () => {
      process.stdin.off("data", onData);
      process.stdin.off("end", onEnd);
      process.stdin.pause();
    };
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", onData);
    process.stdin.on("end", onEnd);
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`contention worker ${process.argv[5] ?? "?"} failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
