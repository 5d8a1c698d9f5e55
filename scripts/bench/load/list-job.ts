import { sharedNow, sleepUntil } from "../clock.ts";
import type { LockDriver } from "../drivers/driver.ts";
import type { Job, ListResult, Schedule } from "../protocol.ts";
import type { PreparedJob } from "./prepared-job.ts";

/** One client listing the held locks, one request after another, after one unmeasured warm-up listing. */
export async function prepareList(driver: LockDriver, job: Extract<Job, { kind: "list" }>): Promise<PreparedJob> {
  const client = await driver.openClient();
  return {
    async run(schedule: Schedule): Promise<ListResult> {
      const latencies: number[] = [];
      const entries: number[] = [];
      await sleepUntil(schedule.startAt);
      const deadline = sharedNow() + job.maxMs;
      try {
        await client.list(job.prefix);
        while (latencies.length < job.requests && sharedNow() < deadline) {
          const listing = await client.list(job.prefix);
          latencies.push(listing.elapsedMs);
          entries.push(listing.entries);
        }
      } finally {
        await client.close();
      }
      return { kind: "list", latencies, entries };
    },
  };
}
