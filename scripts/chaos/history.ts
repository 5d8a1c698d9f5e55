import { appendFileSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

// The campaign's record: every participant, and the injector, appends one JSON
// line per event to its own file. `mono` is CLOCK_MONOTONIC in ms, the same
// clock in every process on the host (Node's process.hrtime, Python's
// time.monotonic_ns), so the merged histories can be ordered; `wall` is
// Date.now() for people.

/** Which kind of participant wrote an event. */
export type ParticipantKind = "grpc" | "python-file" | "node-store";

export type LossReason = "expired" | "unconfirmed" | "closed";

/** What a participant records. `deadline` is the holder's own last confirmed expiry (mono ms). */
export type ParticipantEvent =
  | { ev: "start"; kind: ParticipantKind }
  | { ev: "acquire-start"; resource: string; attempt: number; waitMs: number; ttlMs: number }
  | {
      ev: "acquire-end";
      resource: string;
      attempt: number;
      outcome: "granted" | "busy" | "error" | "aborted";
      token?: number;
      deadline?: number;
      error?: string;
    }
  | { ev: "renewed"; resource: string; token: number; deadline: number }
  /** `id` names the write in the fenced log (fenced-resource.ts). */
  | { ev: "write"; resource: string; token: number; id: string; accepted: boolean; deadline: number }
  | { ev: "lost"; resource: string; token: number; reason: LossReason; deadline: number }
  | { ev: "release-start"; resource: string; token: number }
  | { ev: "release-end"; resource: string; token: number; released: boolean; error?: string }
  /** An error the participant did not expect (a bug, a stack trace). */
  | { ev: "crash"; message: string; stack?: string }
  | { ev: "exit" };

export type FaultKind =
  | "kill-service"
  | "stop-service"
  | "kill-client"
  | "stop-client"
  | "stop-file-participant"
  | "delete-lease-file"
  | "truncate-lease-file";

/** What the injector records. Windows are [mono, endMono]. */
export type InjectorEvent =
  | { ev: "service-start"; servicePid: number }
  | { ev: "service-serving"; servicePid: number }
  | { ev: "service-exit"; servicePid: number; code: number | null; signal: string | null; expected: boolean; stderrTail?: string }
  | {
      ev: "fault";
      fault: FaultKind;
      /** A participant's name, or "service". */
      target: string;
      targetPid?: number;
      resource?: string;
      /** For stops and kills: until the target ran (or served) again. */
      endMono?: number;
      detail?: string;
    }
  | { ev: "participant-exit"; participant: string; targetPid: number; code: number | null; signal: string | null; expected: boolean; stderrTail?: string }
  | { ev: "campaign"; phase: "start" | "quiet" | "end"; seed: number };

export type Stamped<E> = E & { mono: number; wall: number; pid: number; who: string };
export type HistoryEvent = Stamped<ParticipantEvent> | Stamped<InjectorEvent>;

export function mono(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/**
 * Appends events synchronously: a process killed with SIGKILL loses at most
 * the line it was writing, and a stopped one has written everything it did.
 */
export class HistoryWriter {
  constructor(
    private readonly file: string,
    private readonly who: string,
  ) {}

  record<E extends ParticipantEvent | InjectorEvent>(event: E, at: number = mono()): void {
    const line = JSON.stringify({ ...event, mono: at, wall: Date.now(), pid: process.pid, who: this.who });
    appendFileSync(this.file, line + "\n");
  }
}

/** Every event of every history file in `dir`, ordered by `mono`. A torn last line (SIGKILL) is skipped. */
export function readHistories(dir: string): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  for (const name of readdirSync(dir).filter((n) => n.endsWith(".jsonl")).sort()) {
    for (const line of readFileSync(join(dir, name), "utf8").split("\n")) {
      if (line.trim() === "") continue;
      try {
        events.push(JSON.parse(line) as HistoryEvent);
      } catch {
        // a line cut short by SIGKILL: the event did not finish being recorded
      }
    }
  }
  return events.sort((a, b) => a.mono - b.mono);
}
