// Messages between the orchestrator (main.ts) and its load processes
// (load-worker.ts), over Node's IPC channel with "advanced" serialization.

export const SYSTEMS = ["mcp-lockd", "etcd", "proper-lockfile"] as const;
export type SystemName = (typeof SYSTEMS)[number];

/** Where a load process finds the system under test. */
export interface Target {
  system: SystemName;
  /** mcp-lockd and etcd. */
  grpcAddress?: string;
  /** mcp-lockd's HTTP shim (GET /health/locks). */
  httpAddress?: string;
  /** proper-lockfile: the directory its lock files go in. */
  lockDir?: string;
}

/**
 * Times on the shared clock (clock.ts): work starts at `startAt`, and what
 * completes in [measureFrom, measureTo) is measured; closed loops stop
 * starting operations at `measureTo`.
 */
export interface Schedule {
  startAt: number;
  measureFrom: number;
  measureTo: number;
}

export type Job =
  /** One client per resource, each looping the operation; W1, W2, W4. */
  | { kind: "cycles"; op: "acquire-release" | "lifecycle"; resources: string[] }
  /** `contenders` clients each looping: wait for `resource`, release it; W3. */
  | { kind: "handoff"; resource: string; contenders: number }
  /**
   * Grow the held set of this process to `count` leases on resources
   * `<prefix><firstIndex + i>`, spread over `streams` renewal streams, renewing
   * each at ttl/3 from the moment it is granted; W5 to W7.
   */
  | { kind: "hold"; prefix: string; firstIndex: number; count: number; streams: number; ttlSeconds: number; concurrency: number; timeoutMs: number }
  /** Renewal round trips of the held set completing in the measured window. */
  | { kind: "renewal-window" }
  /** Renew every held lease again as soon as its response arrives, then go back to ttl/3. */
  | { kind: "max-rate" }
  /** Stop renewing and close the streams. */
  | { kind: "drop" }
  /** Sequential listings of `prefix` until `requests` were made or `maxMs` passed; W6. */
  | { kind: "list"; prefix: string; requests: number; maxMs: number };

export interface CyclesResult {
  kind: "cycles";
  /** Cycle latencies (ms) of the cycles that completed in the window. */
  latencies: number[];
}

/** One hold of the contended resource, all on the shared clock. */
export interface Hold {
  /** Which contender held it (unique across load processes). */
  contender: string;
  /** When its acquire was sent. */
  waitFrom: number;
  grantAt: number;
  releaseSentAt: number;
  releaseAnsweredAt: number;
}

export interface HandoffResult {
  kind: "handoff";
  holds: Hold[];
}

export interface HoldResult {
  kind: "hold";
  /** Leases this process holds now (granted, not reported lost). */
  alive: number;
  /** Grants this job made. */
  granted: number;
  /** Grants that failed (an error, or the time ran out before all were made). */
  notGranted: number;
  /** Leases found lost so far (the server answered that the lease is gone, or its stream failed). */
  lost: number;
  errors: string[];
}

export interface RenewalResult {
  kind: "renewals";
  /** Round trips (ms) of the renewals answered in the window. */
  roundTrips: number[];
  alive: number;
  lost: number;
  errors: string[];
}

export interface ListResult {
  kind: "list";
  latencies: number[];
  /** Entries in each listing. */
  entries: number[];
}

export interface DoneResult {
  kind: "done";
}

export type JobResult = CyclesResult | HandoffResult | HoldResult | RenewalResult | ListResult | DoneResult;

export type ToWorker =
  | { type: "init"; target: Target }
  | { type: "prepare"; id: number; job: Job }
  | { type: "run"; id: number; schedule: Schedule };

export type FromWorker =
  | { type: "ready" }
  | { type: "prepared"; id: number }
  | { type: "result"; id: number; result: JobResult }
  | { type: "failed"; id: number | null; error: string };
