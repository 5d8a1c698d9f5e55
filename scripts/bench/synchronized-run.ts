import { sharedNow } from "./clock.ts";
import { measureCpuWindow, type CpuWindow } from "./cpu-window.ts";
import type { LoadProcess } from "./load-process.ts";
import type { Job, JobResult, Schedule } from "./protocol.ts";

/** Margin between sending "run" and the common start, so every process starts together. */
const START_MARGIN_MS = 50;

export interface SynchronizedRun {
  results: JobResult[];
  schedule: Schedule;
  cpu: CpuWindow;
}

/**
 * Prepares the jobs (clients connected), starts them at one moment on the
 * shared clock, and measures CPU over the window [start + warmup, + measure)
 * while they run. Fails as soon as any job fails.
 */
export async function runSynchronized(
  parts: Array<{ load: LoadProcess; job: Job }>,
  timing: { warmupMs: number; measureMs: number },
  serverPid: number | undefined,
): Promise<SynchronizedRun> {
  const ids = await Promise.all(parts.map(({ load, job }) => load.prepare(job)));
  const startAt = sharedNow() + START_MARGIN_MS;
  const schedule: Schedule = { startAt, measureFrom: startAt + timing.warmupMs, measureTo: startAt + timing.warmupMs + timing.measureMs };
  const running = Promise.all(parts.map(({ load }, i) => load.run(ids[i]!, schedule)));
  const failed = running.then(() => new Promise<never>(() => {}));
  const clientPids = [...new Set(parts.map(({ load }) => load.pid))];
  const cpu = await Promise.race([measureCpuWindow({ server: serverPid, clients: clientPids }, schedule.measureFrom, schedule.measureTo), failed]);
  return { results: await running, schedule, cpu };
}

/** Prepares and runs the jobs at once, without a measured window (building the held set, dropping it). */
export async function runNow(parts: Array<{ load: LoadProcess; job: Job }>): Promise<JobResult[]> {
  const ids = await Promise.all(parts.map(({ load, job }) => load.prepare(job)));
  const now = sharedNow();
  return Promise.all(parts.map(({ load }, i) => load.run(ids[i]!, { startAt: now, measureFrom: now, measureTo: now })));
}
