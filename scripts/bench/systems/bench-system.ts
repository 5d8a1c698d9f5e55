import type { SystemName, Target } from "../protocol.ts";

/** What a measurement needs of a system beyond taking and releasing locks. */
export type Capability = "server" | "keepalive" | "list" | "etcd";

export interface StartedSystem {
  target: Target;
  /** The server process, for its CPU time and RSS; undefined for a library. */
  serverPid: number | undefined;
  /** Stops the server and removes its data. */
  stop(): Promise<void>;
}

/** The orchestrator's side of a system under test. */
export interface BenchSystem {
  name: SystemName;
  /** Why it cannot run on this machine (say, etcd could not be installed); undefined when it can. */
  unavailable: string | undefined;
  /** Why a capability does not apply to it. */
  notApplicable: Partial<Record<Capability, string>>;
  /** A fresh instance: new data dir, new process. */
  start(): Promise<StartedSystem>;
}
