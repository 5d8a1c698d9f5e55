import { watch } from "node:fs";
import { open, readdir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { FaultKind, HistoryWriter } from "./history.ts";
import { mono } from "./history.ts";
import type { ChaosChild } from "./child-process.ts";
import type { ParticipantSlot } from "./participants.ts";
import type { Random } from "./random.ts";
import type { ServiceControl } from "./service-control.ts";

/** How long each kind of stop lasts: short ones, and the long ones past the guard's staleness (and every ttl). */
export const LONG_STOP_MS = { min: 10_500, max: 12_000 };
/** Up to 7 s: past the commit window (5 s) of protocol v2 but not the guard's staleness. */
const SHORT_STOP_MS = { min: 100, max: 7_000 };
/** An armed stop waits this long at most for its target to create a temp file (inside the guard); planned long stops longer. */
const ARM_MS = 3_000;
const ARM_PLANNED_MS = 8_000;
/** The share of random stops of the service and of file-protocol processes that are armed. */
const ARMED_SHARE = 0.5;
/** The longest a random fault keeps its target busy (an armed stop: arming, then the stop), and a margin. */
const RESERVE_MS = ARM_MS + SHORT_STOP_MS.max + 1_000;
const TARGET_OF: Record<FaultKind, "service" | "client" | "file" | "lock-dir"> = {
  "kill-service": "service",
  "stop-service": "service",
  "kill-client": "client",
  "stop-client": "client",
  "stop-file-participant": "file",
  "delete-lease-file": "lock-dir",
  "truncate-lease-file": "lock-dir",
};
/** Time between two random faults. */
const FAULT_GAP_MS = { min: 300, max: 1_500 };

const WEIGHTS: Record<FaultKind, number> = {
  "kill-service": 1,
  "stop-service": 2,
  "kill-client": 2,
  "stop-client": 2,
  "stop-file-participant": 2,
  "delete-lease-file": 1.5,
  "truncate-lease-file": 1,
};

export interface InjectorContext {
  random: Random;
  history: HistoryWriter;
  service: ServiceControl;
  slots: ParticipantSlot[];
  lockDir: string;
  resources: string[];
  /** Restarts a killed participant slot (a new process). */
  restart(slot: ParticipantSlot): void;
  /** Aborted at the end of the active phase: faults in progress end at once (SIGCONT). */
  ending: AbortSignal;
}

/**
 * The fault injector: random faults from the seeded generator until `ending`,
 * plus planned long stops (past the guard's staleness) of the service, of a
 * file-protocol process and of a gRPC client, spread over the run so even a
 * short run has each. A target under a fault gets no second one meanwhile.
 */
export class Injector {
  private readonly running = new Set<Promise<void>>();
  private serviceBusy = false;

  constructor(private readonly ctx: InjectorContext) {}

  async run(durationMs: number): Promise<void> {
    const { random, ending } = this.ctx;
    const startedAt = mono();
    const longStops = planLongStops(random, durationMs);
    while (!ending.aborted) {
      const due = longStops[0];
      if (due && mono() - startedAt >= due.atMs) {
        const stop = this.stop(due.target, random.between(LONG_STOP_MS.min, LONG_STOP_MS.max), true, ARM_PLANNED_MS);
        // A target under another fault gets its long stop a moment later.
        if (stop) {
          longStops.shift();
          this.launch(stop);
        } else due.atMs += 250;
      }
      await sleep(random.between(FAULT_GAP_MS.min, FAULT_GAP_MS.max), ending);
      if (ending.aborted) break;
      const kind = random.weighted(WEIGHTS);
      // A target whose planned long stop is near gets no random fault now, so it is free then.
      const reserved = longStops.some((stop) => stop.target === TARGET_OF[kind] && stop.atMs - (mono() - startedAt) < RESERVE_MS);
      if (!reserved) this.launch(this.inject(kind));
    }
    await Promise.all(this.running);
  }

  private launch(fault: Promise<void>): void {
    const tracked = fault.catch((err: Error) => {
      process.stderr.write(`chaos: a fault failed to run: ${err.stack ?? err.message}\n`);
    });
    this.running.add(tracked);
    void tracked.finally(() => this.running.delete(tracked));
  }

  private inject(kind: FaultKind): Promise<void> {
    const { random } = this.ctx;
    switch (kind) {
      case "kill-service":
        return this.killService();
      case "stop-service":
        return this.stop("service", random.between(SHORT_STOP_MS.min, SHORT_STOP_MS.max), random.next() < ARMED_SHARE) ?? Promise.resolve();
      case "kill-client":
        return this.killClient();
      case "stop-client":
        return this.stop("client", random.between(SHORT_STOP_MS.min, SHORT_STOP_MS.max)) ?? Promise.resolve();
      case "stop-file-participant":
        return this.stop("file", random.between(SHORT_STOP_MS.min, SHORT_STOP_MS.max), random.next() < ARMED_SHARE) ?? Promise.resolve();
      case "delete-lease-file":
        return this.deleteLeaseFile();
      case "truncate-lease-file":
        return this.truncateLeaseFile();
    }
  }

  private async killService(): Promise<void> {
    if (this.serviceBusy) return;
    this.serviceBusy = true;
    try {
      const targetPid = this.ctx.service.current?.pid;
      const from = mono();
      const servedAt = await this.ctx.service.killAndRestart(this.ctx.random.between(0, 500));
      this.ctx.history.record({ ev: "fault", fault: "kill-service", target: "service", targetPid, endMono: servedAt }, from);
    } finally {
      this.serviceBusy = false;
    }
  }

  /**
   * SIGSTOP for `ms`, then SIGCONT; undefined when no such target is free now.
   * An `armed` stop of a writer (the service, a file-protocol process) waits
   * up to ARM_MS for it to create a temp file (`.R.<pid>.<random>.tmp`), seen
   * through a watch of the lock dir, and stops it right then: inside the
   * guard, between its checks and its commit, as in issue 14.
   */
  private stop(target: "service" | "client" | "file", ms: number, armed = false, armMs = ARM_MS): Promise<void> | undefined {
    const { history, ending } = this.ctx;
    let child: ChaosChild | undefined;
    let release: () => void;
    let fault: FaultKind;
    let name: string;
    if (target === "service") {
      child = this.ctx.service.current;
      if (this.serviceBusy || !child?.running) return undefined;
      this.serviceBusy = true;
      release = () => (this.serviceBusy = false);
      fault = "stop-service";
      name = "service";
    } else {
      const slot = this.pickSlot(target === "client" ? (s) => s.kind === "grpc" : (s) => s.kind !== "grpc");
      child = slot?.child;
      if (!slot || !child) return undefined;
      slot.busy = true;
      release = () => (slot.busy = false);
      fault = target === "client" ? "stop-client" : "stop-file-participant";
      name = slot.name;
    }
    const stopped = child;
    return (armed && target !== "client" ? this.tempFileOf(stopped.pid, armMs) : Promise.resolve(false)).then(async (atTempFile) => {
      const from = mono();
      stopped.stop();
      await sleep(ms, ending);
      stopped.cont();
      release();
      const detail = armed ? (atTempFile ? "stopped as it created a temp file" : `no temp file within ${armMs} ms: stopped anyway`) : undefined;
      history.record({ ev: "fault", fault, target: name, targetPid: stopped.pid, endMono: mono(), detail }, from);
    });
  }

  /** Resolves true when `pid` creates a temp file in the lock dir, false after `armMs` (or at the end). */
  private tempFileOf(pid: number, armMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const marker = `.${pid}.`;
      const watcher = watch(this.ctx.lockDir, (_event, filename) => {
        if (filename?.startsWith(".") && filename.includes(marker)) done(true);
      });
      const timer = setTimeout(() => done(false), armMs);
      const onEnd = () => done(false);
      this.ctx.ending.addEventListener("abort", onEnd, { once: true });
      const ending = this.ctx.ending;
      function done(seen: boolean) {
        watcher.close();
        clearTimeout(timer);
        ending.removeEventListener("abort", onEnd);
        resolve(seen);
      }
      if (ending.aborted) done(false);
    });
  }

  private async killClient(): Promise<void> {
    const slot = this.pickSlot((s) => s.kind === "grpc");
    if (!slot?.child) return;
    slot.busy = true;
    const child = slot.child;
    const from = mono();
    child.kill();
    await child.exited;
    await sleep(this.ctx.random.between(0, 1_000), this.ctx.ending);
    this.ctx.restart(slot);
    slot.busy = false;
    this.ctx.history.record({ ev: "fault", fault: "kill-client", target: slot.name, targetPid: child.pid, endMono: mono() }, from);
  }

  private async deleteLeaseFile(): Promise<void> {
    const resource = await this.pickHeldResource();
    if (!resource) return;
    const from = mono();
    try {
      await unlink(join(this.ctx.lockDir, `${resource}.lock`));
    } catch {
      return; // released meanwhile
    }
    this.ctx.history.record({ ev: "fault", fault: "delete-lease-file", target: "lock-dir", resource, endMono: from }, from);
  }

  /**
   * Cuts a lease file short: it becomes unreadable, which the protocol treats
   * as held by an unknown holder for an hour. After 1-3 s the injector plays
   * the operator and removes it (if nobody replaced it meanwhile), so one
   * fault does not block the resource for the rest of the run.
   */
  private async truncateLeaseFile(): Promise<void> {
    const resource = await this.pickHeldResource();
    if (!resource) return;
    const path = join(this.ctx.lockDir, `${resource}.lock`);
    const from = mono();
    // Through one descriptor, so the file cut is the file later removed: a
    // writer may rename a new lease over the path at any moment.
    let ino: number;
    try {
      const handle = await open(path, "r+");
      try {
        const before = await handle.stat();
        await handle.truncate(this.ctx.random.int(0, Math.floor(before.size / 2)));
        ino = before.ino;
      } finally {
        await handle.close();
      }
    } catch {
      return; // released meanwhile
    }
    await sleep(this.ctx.random.between(1_000, 3_000), this.ctx.ending);
    const after = await stat(path).catch(() => undefined);
    if (after?.ino === ino) await unlink(path).catch(() => {});
    this.ctx.history.record({ ev: "fault", fault: "truncate-lease-file", target: "lock-dir", resource, endMono: mono() }, from);
  }

  private async pickHeldResource(): Promise<string | undefined> {
    const held = (await readdir(this.ctx.lockDir)).filter((n) => n.endsWith(".lock")).map((n) => n.slice(0, -".lock".length));
    const candidates = held.filter((r) => this.ctx.resources.includes(r));
    return candidates.length === 0 ? undefined : this.ctx.random.pick(candidates);
  }

  private pickSlot(filter: (slot: ParticipantSlot) => boolean): ParticipantSlot | undefined {
    const free = this.ctx.slots.filter((s) => filter(s) && !s.busy && s.child?.running);
    return free.length === 0 ? undefined : this.ctx.random.pick(free);
  }
}

/**
 * One long stop each of the service, a file-protocol process and a client per
 * ~30 s of run, early in each round (the random faults resume once they run),
 * so each ends within the run even when armed.
 */
export function planLongStops(random: Random, durationMs: number): Array<{ atMs: number; target: "service" | "file" | "client" }> {
  const targets = ["service", "file", "client"] as const;
  const rounds = Math.max(1, Math.floor(durationMs / 30_000));
  const slot = durationMs / rounds;
  const plan = [];
  for (let r = 0; r < rounds; r++) {
    for (const target of targets) plan.push({ atMs: r * slot + random.between(1_000, 5_000), target });
  }
  return plan.sort((a, b) => a.atMs - b.atMs);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
