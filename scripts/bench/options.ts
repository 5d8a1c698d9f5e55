import { join } from "node:path";
import { RESULTS_DIR } from "./paths.ts";
import { SYSTEMS, type SystemName } from "./protocol.ts";

/** The numbered workloads of docs/performance.md. */
export const WORKLOADS = [1, 2, 3, 4, 5, 6, 7, 8, 9] as const;
export type WorkloadNumber = (typeof WORKLOADS)[number];

export const USAGE = `usage: npm run bench -- [--quick] [--out FILE] [--rounds N] [--systems LIST] [--workloads LIST] [--etcd-store-only]

  --quick         every workload briefly, 1 round, 200 leases instead of 10,000
                  (well under 90 s); proves the harness works, not a result
  --out FILE      where the JSON goes; default bench/results/latest.json, and
                  bench/results/quick.json in quick mode (so a quick run never
                  replaces the full results unless asked to)
  --rounds N      rounds of A B C (default 3, quick 1)
  --systems LIST  comma-separated subset of ${SYSTEMS.join(",")}
  --workloads LIST  comma-separated workload numbers (${WORKLOADS.join(",")}; see
                  docs/performance.md): only those run, the other rows are left out.
                  5, 6 and the held half of 7 share one held set: any of them runs it.
                  Writes bench/results/partial.json unless --out says otherwise.
  --etcd-store-only  only workload 9: mcp-lockd --store etcd (one replica, two)
                  against etcd's v3lock on the same etcd

  BENCH_MCP_LOCKD_METRICS=off runs mcp-lockd with --metrics off, to measure
  what its Prometheus metrics cost (docs/operations.md).
  BENCH_MCP_LOCKD_TRACE=FILE appends to FILE, every 2 s, where mcp-lockd's
  renewals spend their time (scripts/trace-renewals.mjs, preloaded).
  BENCH_MCP_LOCKD_FSYNC=auto|pool|loop passes --fsync to mcp-lockd.
  BENCH_MCP_LOCKD_DURABILITY=off makes every fsync of mcp-lockd return at
  once (scripts/without-fsync.mjs, preloaded): nothing is durable; the upper
  bound of any cheaper durable write, for measurement only.
`;

/** Durations in ms, counts of leases and requests. */
export interface Settings {
  mode: "full" | "quick";
  rounds: number;
  systems: SystemName[];
  /** The workloads to run (--workloads); all by default. */
  workloads: WorkloadNumber[];
  outFile: string;
  /** Only W9 (mcp-lockd on the etcd store against v3lock). */
  etcdStoreOnly: boolean;
  /** Warm-up of the first timed workload of a run (JIT, connections, file-system caches). */
  firstWarmupMs: number;
  warmupMs: number;
  measureMs: number;
  /** 64-client workload: clients, and the load processes they are spread over. */
  manyClients: number;
  manyClientsProcesses: number;
  /** Most load processes a handoff's contenders are spread over (each contender has its own connection). */
  handoffProcesses: number;
  leaseTtlSeconds: number;
  fewLeases: number;
  fewLeasesStreams: number;
  manyLeases: number;
  manyLeasesStreams: number;
  /** Grants in flight while building the held set. */
  holdConcurrency: number;
  /** Give up growing the held set after this long (a server that cannot keep up). */
  holdTimeoutMs: number;
  renewalWarmupMs: number;
  renewalMeasureMs: number;
  /**
   * Warm-up and window of the 10,000-lease renewals: long enough that the
   * window is in the steady state, where a server that writes leases ahead
   * (mcp-lockd's renewal horizon, about once a minute per lease) is doing so.
   */
  manyLeasesWarmupMs: number;
  manyLeasesMeasureMs: number;
  maxRateMeasureMs: number;
  listRequests: number;
  listMaxMs: number;
  /** Starts per way and round for W8 (the round's value is their median). */
  startRepeats: number;
  /** Pause after a server starts before its idle RSS is read. */
  settleMs: number;
}

const FULL: Omit<Settings, "mode" | "rounds" | "systems" | "workloads" | "outFile" | "etcdStoreOnly"> = {
  firstWarmupMs: 3_000,
  warmupMs: 1_000,
  measureMs: 5_000,
  manyClients: 64,
  manyClientsProcesses: 2,
  handoffProcesses: 4,
  leaseTtlSeconds: 10,
  fewLeases: 1_000,
  fewLeasesStreams: 10,
  manyLeases: 10_000,
  manyLeasesStreams: 100,
  holdConcurrency: 32,
  holdTimeoutMs: 180_000,
  renewalWarmupMs: 2_000,
  renewalMeasureMs: 10_000,
  // Grants were made while the set grew (about 20-30 s); mcp-lockd rewrites
  // each lease's horizon about 50 s after its grant. This window covers most
  // of those rewrites, at a higher rate than the steady state's (harder).
  manyLeasesWarmupMs: 28_000,
  manyLeasesMeasureMs: 20_000,
  maxRateMeasureMs: 5_000,
  listRequests: 50,
  listMaxMs: 20_000,
  startRepeats: 3,
  settleMs: 1_000,
};

const QUICK: typeof FULL = {
  firstWarmupMs: 1_500,
  warmupMs: 250,
  measureMs: 1_000,
  manyClients: 64,
  manyClientsProcesses: 2,
  handoffProcesses: 4,
  leaseTtlSeconds: 10,
  fewLeases: 100,
  fewLeasesStreams: 10,
  manyLeases: 200,
  manyLeasesStreams: 100,
  holdConcurrency: 16,
  holdTimeoutMs: 15_000,
  renewalWarmupMs: 300,
  renewalMeasureMs: 1_500,
  manyLeasesWarmupMs: 300,
  manyLeasesMeasureMs: 1_500,
  maxRateMeasureMs: 1_000,
  listRequests: 10,
  listMaxMs: 3_000,
  startRepeats: 1,
  settleMs: 300,
};

export class UsageError extends Error {
  override name = "UsageError";
}

export function parseOptions(argv: string[]): Settings {
  let quick = false;
  let etcdStoreOnly = false;
  let outFile: string | undefined;
  let rounds: number | undefined;
  let systems: SystemName[] = [...SYSTEMS];
  let workloads: WorkloadNumber[] = [...WORKLOADS];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const next = argv[++i];
      if (next === undefined) throw new UsageError(`${arg} needs a value`);
      return next;
    };
    switch (arg) {
      case "--quick":
        quick = true;
        break;
      case "--etcd-store-only":
        etcdStoreOnly = true;
        break;
      case "--out":
        outFile = value();
        break;
      case "--rounds":
        rounds = Number(value());
        if (!Number.isInteger(rounds) || rounds < 1) throw new UsageError("--rounds needs a whole number of at least 1");
        break;
      case "--systems":
        systems = value().split(",").map((name) => {
          if (!(SYSTEMS as readonly string[]).includes(name)) throw new UsageError(`unknown system "${name}" (${SYSTEMS.join(", ")})`);
          return name as SystemName;
        });
        break;
      case "--workloads":
        workloads = value().split(",").map((name) => {
          const number = Number(name);
          if (!(WORKLOADS as readonly number[]).includes(number)) throw new UsageError(`unknown workload "${name}" (${WORKLOADS.join(", ")})`);
          return number as WorkloadNumber;
        });
        break;
      default:
        throw new UsageError(`unknown argument "${arg}"`);
    }
  }
  return {
    ...(quick ? QUICK : FULL),
    mode: quick ? "quick" : "full",
    rounds: rounds ?? (quick ? 1 : 3),
    systems,
    workloads,
    etcdStoreOnly,
    // A run of some workloads never replaces latest.json unless --out says so.
    outFile: outFile ?? join(RESULTS_DIR, quick ? "quick.json" : workloads.length < WORKLOADS.length ? "partial.json" : "latest.json"),
  };
}
