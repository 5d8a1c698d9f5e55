import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { REPO_ROOT } from "../bench/paths.ts";
import { ChaosChild } from "./child-process.ts";
import type { HistoryWriter, ParticipantKind } from "./history.ts";
import type { ParticipantConfig } from "./participant-config.ts";

/** Debian's interpreter, which the Python client is tested with (test/helpers/python.ts). */
export const PYTHON = "/usr/bin/python3";
const SCRIPTS: Record<ParticipantKind, { command: string; script: string }> = {
  grpc: { command: process.execPath, script: fileURLToPath(new URL("./grpc-participant.js", import.meta.url)) },
  "node-store": { command: process.execPath, script: fileURLToPath(new URL("./store-participant.js", import.meta.url)) },
  // The Python source is not compiled: it stays in scripts/chaos.
  "python-file": { command: PYTHON, script: join(REPO_ROOT, "scripts", "chaos", "python_participant.py") },
};

/** One participant "seat": the process in it is replaced when the injector kills it. */
export interface ParticipantSlot {
  name: string;
  kind: ParticipantKind;
  incarnation: number;
  child?: ChaosChild;
  /** Under a fault now (no second fault meanwhile). */
  busy: boolean;
}

export interface SpawnContext {
  historyDir: string;
  fencedDir: string;
  lockDir: string;
  resources: string[];
  ttlMs: number;
  maxWaitMs: number;
  address(): string;
  nextSeed(): number;
  history: HistoryWriter;
  /** Whether an unexpected exit should be followed by a new process in the seat. */
  active(): boolean;
}

/** Starts the next process of `slot`; its history file is `<name>.<incarnation>.jsonl`. */
export function spawnParticipant(slot: ParticipantSlot, ctx: SpawnContext): void {
  slot.incarnation += 1;
  const who = `${slot.name}.${slot.incarnation}`;
  const config: ParticipantConfig = {
    name: who,
    kind: slot.kind,
    historyFile: join(ctx.historyDir, `${who}.jsonl`),
    fencedDir: ctx.fencedDir,
    lockDir: ctx.lockDir,
    address: slot.kind === "grpc" ? ctx.address() : undefined,
    resources: ctx.resources,
    seed: ctx.nextSeed(),
    ttlMs: ctx.ttlMs,
    maxWaitMs: ctx.maxWaitMs,
  };
  const { command, script } = SCRIPTS[slot.kind];
  slot.child = new ChaosChild(command, [script, JSON.stringify(config)], join(ctx.historyDir, `${who}.stderr`), (child, code, signal, expected) => {
    ctx.history.record({
      ev: "participant-exit",
      participant: who,
      targetPid: child.pid,
      code,
      signal,
      // SIGTERM kills a process that has not yet set up its handler (just restarted): harmless.
      expected: expected && (signal === "SIGKILL" || signal === "SIGTERM" || code === 0),
      stderrTail: expected && code === 0 ? undefined : child.stderrTail(),
    });
    if (!expected && ctx.active() && slot.child === child) spawnParticipant(slot, ctx);
  });
}
