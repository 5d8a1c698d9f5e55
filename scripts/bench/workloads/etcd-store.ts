import { join } from "node:path";
import { LoadProcess } from "../load-process.ts";
import type { Settings } from "../options.ts";
import type { SystemName, Target } from "../protocol.ts";
import type { ResultTable } from "../results.ts";
import type { BenchSystem, StartedSystem } from "../systems/bench-system.ts";
import { startEtcd, type EtcdInstall } from "../systems/etcd.ts";
import { startMcpLockd } from "../systems/mcp-lockd.ts";
import type { ServerProcess } from "../systems/server-process.ts";
import { makeTempDir } from "../systems/temp-dir.ts";
import { runCycles } from "./cycles.ts";
import { runHandoff } from "./handoff.ts";
import type { RunContext, WindowRecord } from "./run-context.ts";

// W9: mcp-lockd on the etcd store (issue 9) against etcd's own v3lock, both
// on ONE fresh etcd per round (the same member, data dir and settings), in
// the mcp-lockd and etcd columns of the same rows:
//   w9-cycles    uncontended acquire+release, one client (mcp-lockd: one replica);
//   w9-handoff   two contenders on one resource (one replica);
//   w9-handoff2  two contenders, two mcp-lockd replicas, each contender on its
//                own replica: every hand-over crosses replicas (v3lock: two
//                clients, as in w9-handoff).
// Each side gets fresh load processes and its own key prefix; the side that
// goes first alternates by round.

const KEYS = ["w9-cycles", "w9-handoff", "w9-handoff2"];

export interface EtcdStoreRun {
  settings: Settings;
  round: number;
  table: ResultTable;
  windows: WindowRecord[];
  etcd: EtcdInstall;
  log(message: string): void;
}

/** Sets every W9 row of `system` for this round to null with `reason` (rows already filled keep their values). */
function fail(run: EtcdStoreRun, system: SystemName, keys: string[], reason: string): void {
  for (const prefix of keys) {
    for (const key of run.table.keys(prefix)) {
      const runs = run.table.results(key, system);
      if (runs !== null && runs[run.round] === null) run.table.set(key, system, run.round, null, reason);
    }
  }
}

/** A BenchSystem of `name` for the run context (W9 starts its servers itself). */
function asSystem(name: SystemName): BenchSystem {
  return { name, unavailable: undefined, notApplicable: {}, start: () => Promise.reject(new Error("W9 starts its own servers")) };
}

/** Runs `body` with fresh load processes on `targets` (load i on targets[i % n]), stopping them after. */
async function withLoads(targets: Target[], count: number, body: (loads: LoadProcess[]) => Promise<void>): Promise<void> {
  const loads: LoadProcess[] = [];
  try {
    for (let i = 0; i < count; i++) loads.push(await LoadProcess.start(targets[i % targets.length]!));
    await body(loads);
  } finally {
    await Promise.all(loads.map((load) => load.stop()));
  }
}

/** One step, its rows nulled with the error if it fails. */
async function step(run: EtcdStoreRun, system: SystemName, key: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    const message = (err as Error).message.split("\n")[0]!;
    run.log(`${system} ${key} failed: ${(err as Error).stack ?? message}`);
    fail(run, system, [key], `failed: ${message}`);
  }
}

function context(run: EtcdStoreRun, system: SystemName, started: StartedSystem, loads: LoadProcess[]): RunContext {
  return { system: asSystem(system), started, settings: run.settings, round: run.round, loads, table: run.table, windows: run.windows, log: run.log };
}

async function runV3lock(run: EtcdStoreRun, grpcAddress: string, etcdPid: number): Promise<void> {
  const target: Target = { system: "etcd", grpcAddress };
  const started: StartedSystem = { target, serverPid: etcdPid, stop: async () => {} };
  await withLoads([target], 2, async (loads) => {
    const ctx = context(run, "etcd", started, loads);
    await step(run, "etcd", "w9-cycles", () => runCycles(ctx, { key: "w9-cycles", clients: 1, processes: 1, op: "acquire-release", warmupMs: run.settings.firstWarmupMs }));
    await step(run, "etcd", "w9-handoff", () => runHandoff(ctx, 2, "w9-handoff"));
    await step(run, "etcd", "w9-handoff2", () => runHandoff(ctx, 2, "w9-handoff2"));
  });
}

async function runOnEtcdStore(run: EtcdStoreRun, etcdEndpoint: string): Promise<void> {
  const servers: ServerProcess[] = [];
  const targetOf = (server: ServerProcess): Target => ({ system: "mcp-lockd", grpcAddress: server.match[1]!, httpAddress: server.match[2]! });
  try {
    // One replica.
    const one = await startMcpLockd("node", { etcd: etcdEndpoint, prefix: `/bench-r${run.round}-one/` });
    servers.push(one);
    const started: StartedSystem = { target: targetOf(one), serverPid: one.pid, stop: async () => {} };
    await withLoads([started.target], 2, async (loads) => {
      const ctx = context(run, "mcp-lockd", started, loads);
      await step(run, "mcp-lockd", "w9-cycles", () => runCycles(ctx, { key: "w9-cycles", clients: 1, processes: 1, op: "acquire-release", warmupMs: run.settings.firstWarmupMs }));
      await step(run, "mcp-lockd", "w9-handoff", () => runHandoff(ctx, 2, "w9-handoff"));
    });
    await one.stop();
    // Two replicas on one prefix; contender 0 on the first, contender 1 on the second.
    const prefix = `/bench-r${run.round}-two/`;
    const a = await startMcpLockd("node", { etcd: etcdEndpoint, prefix });
    servers.push(a);
    const b = await startMcpLockd("node", { etcd: etcdEndpoint, prefix });
    servers.push(b);
    // Server CPU is the first replica's alone.
    const pair: StartedSystem = { target: targetOf(a), serverPid: a.pid, stop: async () => {} };
    await withLoads([targetOf(a), targetOf(b)], 2, async (loads) => {
      await step(run, "mcp-lockd", "w9-handoff2", () => runHandoff(context(run, "mcp-lockd", pair, loads), 2, "w9-handoff2"));
    });
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
}

/** W9 for one round: a fresh etcd, v3lock and mcp-lockd --store etcd on it in turn, then etcd stopped. */
export async function runEtcdStore(run: EtcdStoreRun): Promise<void> {
  const sides: SystemName[] = ["mcp-lockd", "etcd"].filter((name) => run.settings.systems.includes(name as SystemName)) as SystemName[];
  if (sides.length === 0) return;
  if (!run.etcd.path) {
    for (const side of sides) fail(run, side, KEYS, run.etcd.unavailable ?? "etcd is not available");
    return;
  }
  const dir = await makeTempDir("etcd-store-bench-");
  let etcd: Awaited<ReturnType<typeof startEtcd>> | undefined;
  try {
    etcd = await startEtcd(run.etcd.path, join(dir.path, "data"));
    const { grpcAddress, server } = etcd;
    const order = run.round % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) {
      run.log(`${side === "etcd" ? "etcd v3lock" : "mcp-lockd --store etcd"} on the round's etcd`);
      try {
        if (side === "etcd") await runV3lock(run, grpcAddress, server.pid);
        else await runOnEtcdStore(run, `http://${grpcAddress}`);
      } catch (err) {
        run.log(`${side} failed to run: ${(err as Error).stack ?? (err as Error).message}`);
        fail(run, side, KEYS, `failed: ${(err as Error).message.split("\n")[0]}`);
      }
    }
  } catch (err) {
    run.log(`etcd did not start: ${(err as Error).message}`);
    for (const side of sides) fail(run, side, KEYS, `etcd did not start: ${(err as Error).message.split("\n")[0]}`);
  } finally {
    await etcd?.server.stop();
    await dir.remove();
  }
}
