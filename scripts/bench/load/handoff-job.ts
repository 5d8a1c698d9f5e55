import { sharedNow, sleepUntil } from "../clock.ts";
import type { LockDriver } from "../drivers/driver.ts";
import type { HandoffResult, Hold, Job, Schedule } from "../protocol.ts";
import type { PreparedJob } from "./prepared-job.ts";

/**
 * Contenders on one resource, each with its own client: wait for it, release
 * it at once, wait again. Every hold is timed on the shared clock so the
 * orchestrator can pair one holder's release with the next holder's grant
 * across processes. After the window each contender finishes the wait it is
 * in, so every waiter is eventually granted and the last one releases.
 */
export async function prepareHandoff(driver: LockDriver, job: Extract<Job, { kind: "handoff" }>): Promise<PreparedJob> {
  const clients = await Promise.all(Array.from({ length: job.contenders }, () => driver.openClient()));
  return {
    async run(schedule: Schedule): Promise<HandoffResult> {
      const holds: Hold[] = [];
      await sleepUntil(schedule.startAt);
      try {
        await Promise.all(
          clients.map(async (client, i) => {
            const contender = `${process.pid}/${i}`;
            while (sharedNow() < schedule.measureTo) {
              const waitFrom = sharedNow();
              const release = await client.acquireWaiting(job.resource);
              const grantAt = sharedNow();
              const releaseSentAt = sharedNow();
              await release();
              holds.push({ contender, waitFrom, grantAt, releaseSentAt, releaseAnsweredAt: sharedNow() });
            }
          }),
        );
      } finally {
        await Promise.all(clients.map((client) => client.close()));
      }
      return { kind: "handoff", holds };
    },
  };
}
