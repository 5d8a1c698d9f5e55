import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Milliseconds on a clock shared by every process of the benchmark: each
 * process's wall-clock origin plus its monotonic offset. Processes disagree
 * only by the error of reading the wall clock at their start (microseconds),
 * so a grant timed in one load process can be compared with a release timed
 * in another.
 */
export function sharedNow(): number {
  return performance.timeOrigin + performance.now();
}

export async function sleepUntil(at: number): Promise<void> {
  const delay = at - sharedNow();
  if (delay > 0) await sleep(delay);
}
