import { randomInt } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LockClient, ResourceBusyError } from "../../src/client/index.ts";
import { checkHistories, DEFAULT_CHECK_PARAMS, type CheckReport } from "./checker.ts";
import { fencedLogPath } from "./fenced-resource.ts";
import { HistoryWriter, readHistories, type ParticipantKind } from "./history.ts";
import { Injector } from "./injector.ts";
import { PYTHON, spawnParticipant, type ParticipantSlot } from "./participants.ts";
import { Random } from "./random.ts";
import { ServiceControl, type ServiceRuntime } from "./service-control.ts";

export interface CampaignOptions {
  durationMs: number;
  seed: number;
  grpc: number;
  python: number;
  store: number;
  resources: number;
  ttlMs: number;
  /** Longest wait of one acquisition. */
  maxWaitMs: number;
  /** What runs the service. */
  runtime: ServiceRuntime;
  /** Keep the temp dir (histories, logs, lock dir) even when the run is clean. */
  keep: boolean;
  /** Progress lines go here (stderr by default). */
  log?: (line: string) => void;
}

export const DEFAULT_CAMPAIGN: Omit<CampaignOptions, "seed"> = {
  durationMs: 60_000,
  grpc: 3,
  python: 2,
  store: 2,
  resources: 3,
  ttlMs: 3_000,
  maxWaitMs: 6_000,
  runtime: "node",
  keep: false,
};

/**
 * Temp files older than this at the end are junk: anyone MAY remove them once
 * a minute old, and the service sweeps them at start and every 60 s (file
 * protocol version 2), so one can outlive its minute by up to another minute.
 */
const TEMP_FILE_MAX_AGE_MS = 120_000;

export interface CampaignResult {
  options: Omit<CampaignOptions, "log">;
  seed: number;
  durationMs: number;
  report: CheckReport;
  clean: boolean;
  /** The temp dir, when it was kept. */
  keptDir?: string;
  /** The lock dir's fences were directories: the store writes file protocol version 2. */
  fenceDirectories: boolean;
}

export function randomSeed(): number {
  return randomInt(1, 2 ** 31);
}

/**
 * One run: the service, the participants and the injector for `durationMs`;
 * then the quiet period (every stop ended, participants told to finish with
 * SIGTERM, one more try of every resource so a guard left by a killed writer
 * is broken as stale, the service shut down), the junk check, and the
 * checker over the merged histories.
 */
export async function runCampaign(options: CampaignOptions): Promise<CampaignResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(line + "\n"));
  if (options.python > 0 && !existsSync(PYTHON)) throw new Error(`${PYTHON} is needed for the Python participants (or pass --python 0)`);
  const root = await mkdtemp(join(tmpdir(), "mcp-lockd-chaos-"));
  const lockDir = join(root, "locks");
  const historyDir = join(root, "history");
  const fencedDir = join(root, "fenced");
  await Promise.all([mkdir(lockDir), mkdir(historyDir), mkdir(fencedDir)]);
  const random = new Random(options.seed);
  const history = new HistoryWriter(join(historyDir, "injector.jsonl"), "injector");
  const resources = Array.from({ length: options.resources }, (_, i) => `r${i}`);
  const service = new ServiceControl(lockDir, historyDir, history, options.runtime);
  let active = true;
  history.record({ ev: "campaign", phase: "start", seed: options.seed });
  log(`chaos: seed ${options.seed}, ${options.durationMs / 1000} s, ${options.grpc} gRPC + ${options.python} Python + ${options.store} LeaseFileStore participants on ${resources.length} resources, the service under ${options.runtime}; dir ${root}`);
  await service.start();

  const slots: ParticipantSlot[] = [];
  const add = (kind: ParticipantKind, count: number, prefix: string) => {
    for (let i = 1; i <= count; i++) slots.push({ name: `${prefix}${i}`, kind, incarnation: 0, busy: false });
  };
  add("grpc", options.grpc, "grpc");
  add("python-file", options.python, "py");
  add("node-store", options.store, "store");
  const spawnContext = {
    historyDir,
    fencedDir,
    lockDir,
    resources,
    ttlMs: options.ttlMs,
    maxWaitMs: options.maxWaitMs,
    address: () => service.address,
    nextSeed: () => random.fork(),
    history,
    active: () => active,
  };
  for (const slot of slots) spawnParticipant(slot, spawnContext);

  const crashes: string[] = [];
  let junk: string[] = [];
  let fenceDirectories = false;
  try {
    const ending = new AbortController();
    const injector = new Injector({
      random,
      history,
      service,
      slots,
      lockDir,
      resources,
      restart: (slot) => {
        if (active) spawnParticipant(slot, spawnContext);
      },
      ending: ending.signal,
    });
    const injecting = injector.run(options.durationMs);
    await new Promise((resolve) => setTimeout(resolve, options.durationMs));
    ending.abort();
    await injecting;

    // --- the quiet period
    history.record({ ev: "campaign", phase: "quiet", seed: options.seed });
    log("chaos: quiet period");
    active = false;
    const children = slots.flatMap((s) => (s.child?.running ? [{ slot: s, child: s.child }] : []));
    for (const { child } of children) child.terminate();
    const finishMs = options.maxWaitMs + 20_000;
    await Promise.all(
      children.map(async ({ slot, child }) => {
        const timer = setTimeout(() => {
          crashes.push(`participant ${slot.name}.${slot.incarnation} did not finish within ${finishMs} ms of SIGTERM:\n${child.stderrTail()}`);
          child.kill();
        }, finishMs);
        await child.exited;
        clearTimeout(timer);
      }),
    );
    try {
      await sweep(service.address, resources);
    } catch (err) {
      crashes.push(`the final try of every resource through the service failed: ${(err as Error).message}`);
    }
    junk = await findJunk(lockDir);
    fenceDirectories = await fencesAreDirectories(lockDir, resources);
    if (!(await service.shutdown())) crashes.push("the service did not exit 0 on SIGTERM at the end");
  } finally {
    // Also when the campaign itself failed: leave no process behind.
    active = false;
    for (const slot of slots) if (slot.child?.running) slot.child.kill();
    if (service.current?.running) await service.shutdown(0);
  }
  history.record({ ev: "campaign", phase: "end", seed: options.seed });

  crashes.push(...(await serviceStackTraces(historyDir)));
  const fencedLogs = new Map<string, string>();
  for (const resource of resources) {
    fencedLogs.set(resource, await readFile(fencedLogPath(fencedDir, resource), "utf8").catch(() => ""));
  }
  const report = checkHistories({
    events: readHistories(historyDir),
    fencedLogs,
    junk,
    crashes,
    params: { ...DEFAULT_CHECK_PARAMS, ttlMs: options.ttlMs },
  });
  const clean = report.violations.length === 0;
  const keep = options.keep || !clean;
  if (!keep) await rm(root, { recursive: true, force: true });
  const { log: _log, ...shown } = options;
  return { options: shown, seed: options.seed, durationMs: options.durationMs, report, clean, keptDir: keep ? root : undefined, fenceDirectories };
}

/**
 * One try of every resource through the service: it takes each guard, so a
 * guard a killed or stopped writer left behind is broken once stale (the
 * service waits up to 15 s for a busy guard). What is left after this is junk.
 */
async function sweep(address: string, resources: string[]): Promise<void> {
  const client = new LockClient({ address });
  try {
    for (const resource of resources) {
      try {
        const lock = await client.acquire(resource, { ttl: 1_000 });
        await lock.release();
      } catch (err) {
        if (!(err instanceof ResourceBusyError)) throw err;
      }
    }
  } finally {
    await client[Symbol.asyncDispose]();
  }
}

/** Guard dirs (nobody holds a guard now), temp files older than a minute, anything the protocol does not name. */
async function findJunk(lockDir: string): Promise<string[]> {
  const junk: string[] = [];
  const now = Date.now();
  for (const name of await readdir(lockDir)) {
    const info = await stat(join(lockDir, name)).catch(() => undefined);
    if (!info) continue;
    if (name.endsWith(".lock.guard")) junk.push(`guard ${name} left in the lock dir with nobody inside`);
    else if (name.startsWith(".") && name.endsWith(".tmp")) {
      const ageMs = now - info.mtimeMs;
      if (ageMs > TEMP_FILE_MAX_AGE_MS) junk.push(`temp file ${name}, ${Math.round(ageMs / 1000)} s old`);
    } else if (!/^[A-Za-z0-9][A-Za-z0-9._-]*\.lock(\.fence)?$/.test(name)) junk.push(`unexpected entry ${name}`);
  }
  return junk;
}

async function fencesAreDirectories(lockDir: string, resources: string[]): Promise<boolean> {
  for (const resource of resources) {
    const info = await stat(join(lockDir, `${resource}.lock.fence`)).catch(() => undefined);
    if (info) return info.isDirectory();
  }
  return false;
}

/** Stack traces in the service's stderr (any of its runs). */
async function serviceStackTraces(historyDir: string): Promise<string[]> {
  const traces: string[] = [];
  for (const name of (await readdir(historyDir)).filter((n) => n.startsWith("service.") && n.endsWith(".stderr"))) {
    const text = await readFile(join(historyDir, name), "utf8");
    const lines = text.split("\n");
    const first = lines.findIndex((line) => /^\s+at .+:\d+:\d+\)?$/.test(line));
    if (first >= 0) traces.push(`the service printed a stack trace (${name}): ${lines.slice(Math.max(0, first - 3), first + 5).join("\n")}`);
  }
  return traces;
}

