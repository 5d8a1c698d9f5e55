import { readFenceToken } from "../helpers/fence.ts";
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { exists } from "../helpers/fs.ts";
import { startServiceProcess, type ServiceProcess } from "../helpers/service-process.ts";
import { assertValidLockDir } from "../helpers/lease-file-schema.ts";
import type { CycleRecord } from "./contention-worker.ts";

// Several real processes contend for one resource through one real service.
// Each holder proves its exclusivity inside the critical section with an
// O_EXCL marker file; the records they leave are checked for overlapping
// holds and for fencing tokens that are not strictly increasing.

const WORKER_SCRIPT = fileURLToPath(new URL("./contention-worker.js", import.meta.url));
const CYCLES = 25;
/** Kills everything if a run has not finished by then (the workers' waits are 30 s). */
const RUN_DEADLINE_MS = 90_000;

type Mode = "wait" | "try";

interface WorkerProcess {
  name: string;
  mode: Mode;
  child: ChildProcess;
  exited: Promise<number | NodeJS.Signals>;
  ready: Promise<void>;
  output(): string;
}

function spawnWorker(service: ServiceProcess, workDir: string, lockDir: string, name: string, mode: Mode): WorkerProcess {
  const child = spawn(
    process.execPath,
    [WORKER_SCRIPT, service.grpcAddress, workDir, lockDir, name, String(CYCLES), mode],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  // A worker that died early must not turn the "go" write into an unhandled EPIPE.
  child.stdin!.on("error", () => {});
  const exited = once(child, "exit").then(([code, signal]) => (signal ?? code) as number | NodeJS.Signals);
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      if (stdout.includes("ready\n")) resolve();
    });
    void exited.then((code) => reject(new Error(`worker ${name} exited (${code}) before it was ready:\n${stderr}`)));
  });
  // A worker that fails before "ready" rejects this; the run reports it through exited.
  ready.catch(() => {});
  return { name, mode, child, exited, ready, output: () => `stdout:\n${stdout}\nstderr:\n${stderr}` };
}

async function readRecords(path: string): Promise<CycleRecord[]> {
  const text = await readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return "";
    throw err;
  });
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as CycleRecord);
}

/** Runs one worker per mode against a fresh service and checks the records they leave. */
async function runContention(modes: Mode[]): Promise<CycleRecord[]> {
  const work = await makeTempDir("mcp-lockd-contention-");
  const lockDir = join(work.path, "locks");
  let service: ServiceProcess | undefined;
  const workers: WorkerProcess[] = [];
  let deadline: NodeJS.Timeout | undefined;
  try {
    service = await startServiceProcess({ lockDir });
    modes.forEach((mode, i) => workers.push(spawnWorker(service!, work.path, lockDir, `w${i}-${mode}`, mode)));
    const timedOut = new Promise<never>((_, reject) => {
      deadline = setTimeout(() => {
        for (const worker of workers) worker.child.kill("SIGKILL");
        reject(
          new Error(
            `contention run did not finish within ${RUN_DEADLINE_MS} ms:\n` +
              workers.map((w) => `--- ${w.name}\n${w.output()}`).join("\n") +
              `\n--- service stderr\n${service?.stderr()}`,
          ),
        );
      }, RUN_DEADLINE_MS);
    });
    timedOut.catch(() => {});

    // Start signal only once every worker is connected, so they contend from the first round.
    await Promise.race([Promise.all(workers.map((w) => w.ready)), timedOut]);
    for (const worker of workers) worker.child.stdin!.end("go\n");
    const codes = await Promise.race([Promise.all(workers.map((w) => w.exited)), timedOut]);
    workers.forEach((worker, i) => {
      assert.equal(codes[i], 0, `worker ${worker.name} exited with ${codes[i]}\n${worker.output()}\n--- service stderr\n${service!.stderr()}`);
    });

    const perWorker = await Promise.all(workers.map((w) => readRecords(join(work.path, `${w.name}.jsonl`))));
    perWorker.forEach((records, i) => {
      assert.equal(records.length, CYCLES, `worker ${workers[i]!.name} finished ${records.length} of ${CYCLES} rounds`);
    });
    const all = perWorker.flat();
    assert.equal(all.length, modes.length * CYCLES);

    // Nobody found the marker taken or a lease file naming someone else.
    const violations = all.flatMap((r) => r.violations.map((v) => `${r.worker} round ${r.cycle}: ${v}`));
    assert.deepEqual(violations, [], "critical-section violations");
    assert.equal(await exists(join(work.path, "critical")), false, "the marker file was left behind");

    // Tokens strictly increase in grant order, with no duplicates across workers,
    // and the hold intervals in that order do not overlap.
    const byToken = [...all].sort((a, b) => a.fencing_token - b.fencing_token);
    for (let i = 1; i < byToken.length; i++) {
      const previous = byToken[i - 1]!;
      const current = byToken[i]!;
      assert.ok(
        current.fencing_token > previous.fencing_token,
        `fencing token ${current.fencing_token} granted twice (${previous.worker} round ${previous.cycle}, ${current.worker} round ${current.cycle})`,
      );
      assert.ok(
        previous.end <= current.start,
        `holds overlap: ${previous.worker} token ${previous.fencing_token} held until ${previous.end}, ` +
          `${current.worker} token ${current.fencing_token} from ${current.start}`,
      );
    }
    // One service and no other writer: it issues consecutive tokens from the block it reserved,
    // so no gap means nothing was granted outside these records.
    assert.equal(byToken.at(-1)!.fencing_token - byToken[0]!.fencing_token + 1, all.length, "fencing tokens have gaps");

    // The shared log was appended in grant order, one line per round.
    const logTokens = (await readFile(join(work.path, "shared.log"), "utf8"))
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => Number(line.split(" ")[0]));
    assert.equal(logTokens.length, all.length);
    assert.deepEqual(logTokens, byToken.map((r) => r.fencing_token), "shared log lines are not in fencing-token order");

    // Everything was released; the lock dir holds no lease file and the counter names the last
    // token issued (docs/protocol.md section 2).
    assert.equal(await assertValidLockDir(lockDir), 0);
    const fence = await readFenceToken(lockDir, "shared");
    assert.ok(fence >= byToken.at(-1)!.fencing_token, `the fence (${fence}) is below the last token (${byToken.at(-1)!.fencing_token})`);
    return all;
  } finally {
    clearTimeout(deadline);
    for (const worker of workers) {
      if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill("SIGKILL");
    }
    await Promise.all(workers.map((w) => w.exited));
    if (service) await service.stop("SIGKILL");
    await work.remove();
  }
}

test("four processes waiting for one resource never hold it at the same time", { timeout: 120_000 }, async () => {
  await runContention(["wait", "wait", "wait", "wait"]);
});

test("try-once acquirers retrying on ABORTED never get a resource over its holder", { timeout: 120_000 }, async () => {
  const records = await runContention(["wait", "wait", "try", "try"]);
  const tries = records.filter((r) => r.mode === "try");
  assert.equal(tries.length, 2 * CYCLES);
  // The try-once callers did meet a held resource (and were refused) at least once;
  // otherwise this run would not have tested them against a holder.
  const refused = tries.reduce((sum, r) => sum + r.attempts - 1, 0);
  assert.ok(refused > 0, "try-once workers were never refused, so they never contended");
});
