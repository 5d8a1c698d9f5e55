import { sharedNow, sleepUntil } from "../clock.ts";
import type { LockDriver } from "../drivers/driver.ts";
import type { CyclesResult, Job, Schedule } from "../protocol.ts";
import type { PreparedJob } from "./prepared-job.ts";

/**
 * Closed loops, one client per resource: each starts its next cycle as soon
 * as the previous one is answered. A cycle counts when it completes inside
 * the window.
 */
export async function prepareCycles(driver: LockDriver, job: Extract<Job, { kind: "cycles" }>): Promise<PreparedJob> {
  const clients = await Promise.all(job.resources.map(() => driver.openClient()));
  return {
    async run(schedule: Schedule): Promise<CyclesResult> {
      const latencies: number[] = [];
      await sleepUntil(schedule.startAt);
      try {
        await Promise.all(
          clients.map(async (client, i) => {
            const resource = job.resources[i]!;
            const cycle = job.op === "lifecycle" ? () => client.lifecycle(resource) : () => client.acquireRelease(resource);
            while (sharedNow() < schedule.measureTo) {
              const started = sharedNow();
              await cycle();
              const ended = sharedNow();
              if (ended >= schedule.measureFrom && ended < schedule.measureTo) latencies.push(ended - started);
            }
          }),
        );
      } finally {
        await Promise.all(clients.map((client) => client.close()));
      }
      return { kind: "cycles", latencies };
    },
  };
}
