import type { ParticipantKind } from "./history.ts";

/** What the campaign tells a participant process (as JSON in argv[2], for Python too). */
export interface ParticipantConfig {
  name: string;
  kind: ParticipantKind;
  historyFile: string;
  /** Where the fenced logs live (not the lock dir: they are no part of the protocol). */
  fencedDir: string;
  lockDir: string;
  /** gRPC participants only. */
  address?: string;
  resources: string[];
  seed: number;
  ttlMs: number;
  /** Longest wait of one acquisition. */
  maxWaitMs: number;
}

export function configFromArgv(argv: string[] = process.argv): ParticipantConfig {
  const text = argv[2];
  if (text === undefined) throw new Error("usage: <participant> '<config JSON>'");
  return JSON.parse(text) as ParticipantConfig;
}
