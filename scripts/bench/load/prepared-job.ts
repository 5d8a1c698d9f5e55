import type { JobResult, Schedule } from "../protocol.ts";

/** A job whose clients are connected, waiting for the common start. */
export interface PreparedJob {
  run(schedule: Schedule): Promise<JobResult>;
}
