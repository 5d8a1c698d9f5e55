// A load process: drives one system through its driver, one job at a time,
// on the orchestrator's commands (protocol.ts). It runs apart from the
// servers so that the client's CPU is its own and measurable.

import { openDriver } from "./drivers/open-driver.ts";
import type { LockDriver } from "./drivers/driver.ts";
import { prepareCycles } from "./load/cycles-job.ts";
import { prepareHandoff } from "./load/handoff-job.ts";
import { HeldLeases } from "./load/held-leases.ts";
import { prepareList } from "./load/list-job.ts";
import type { PreparedJob } from "./load/prepared-job.ts";
import type { FromWorker, Job, ToWorker } from "./protocol.ts";

let driver: LockDriver | undefined;
let held: HeldLeases | undefined;
const prepared = new Map<number, PreparedJob>();

function send(message: FromWorker): void {
  process.send!(message);
}

function heldLeases(): HeldLeases {
  return (held ??= new HeldLeases(driver!));
}

async function prepare(job: Job): Promise<PreparedJob> {
  if (!driver) throw new Error("a job before init");
  switch (job.kind) {
    case "cycles":
      return prepareCycles(driver, job);
    case "handoff":
      return prepareHandoff(driver, job);
    case "list":
      return prepareList(driver, job);
    case "hold":
      return { run: () => heldLeases().hold(job) };
    case "renewal-window":
      return { run: (schedule) => heldLeases().window(schedule) };
    case "max-rate":
      return { run: (schedule) => heldLeases().maxRate(schedule) };
    case "drop":
      return {
        run: async () => {
          await held?.drop();
          held = undefined;
          return { kind: "done" };
        },
      };
  }
}

async function handle(message: ToWorker): Promise<void> {
  switch (message.type) {
    case "init":
      driver = await openDriver(message.target);
      send({ type: "ready" });
      return;
    case "prepare":
      prepared.set(message.id, await prepare(message.job));
      send({ type: "prepared", id: message.id });
      return;
    case "run": {
      const job = prepared.get(message.id);
      prepared.delete(message.id);
      if (!job) throw new Error(`run of unknown job ${message.id}`);
      send({ type: "result", id: message.id, result: await job.run(message.schedule) });
      return;
    }
  }
}

process.on("message", (message: ToWorker) => {
  handle(message).catch((err: unknown) =>
    send({ type: "failed", id: "id" in message ? message.id : null, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});
// The orchestrator is gone (finished or killed): nothing left to do.
process.on("disconnect", () => process.exit(0));
