// npm run bench [-- --quick] [--out FILE]: mcp-lockd, etcd and proper-lockfile
// side by side on this machine (issue 5). Each round runs every system once,
// fresh (new data dir, new server process, new load processes), in rotating
// order; then the start-to-serving workload. Prints a Markdown table on
// stdout (progress on stderr) and writes the JSON results. Method: docs/performance.md.

import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { performance } from "node:perf_hooks";
import { measureDiskFloorMs } from "./disk-floor.ts";
import { machineInfo } from "./machine.ts";
import { metricCatalog } from "./metrics.ts";
import { parseOptions, USAGE, UsageError, type Settings, type WorkloadNumber } from "./options.ts";
import { SYSTEMS } from "./protocol.ts";
import { markdownTable, NOT_RUN_WORKLOAD } from "./report.ts";
import { ResultTable } from "./results.ts";
import { runSystem } from "./run-system.ts";
import type { BenchSystem } from "./systems/bench-system.ts";
import { ensureEtcd } from "./systems/etcd.ts";
import { stopAllServers } from "./systems/server-process.ts";
import { binaryExists, mcpLockdSystem } from "./systems/mcp-lockd.ts";
import { properLockfileSystem } from "./systems/proper-lockfile.ts";
import { writeRatioChart } from "./ratio-chart.ts";
import { etcdSystem } from "./systems/etcd.ts";
import type { WindowRecord } from "./workloads/run-context.ts";
import { runEtcdStore } from "./workloads/etcd-store.ts";
import { runStartup, warmUpStarts } from "./workloads/startup.ts";

function log(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

/** Whether a row is measured when only `workloads` run (idle RSS always is; the held set serves 5, 6 and 7's held RSS). */
function measured(key: string, workloads: WorkloadNumber[]): boolean {
  if (key === "w7.idle") return true;
  if (key === "w7.held") return workloads.some((n) => n === 5 || n === 6 || n === 7);
  return workloads.includes(Number(/^w(\d)/.exec(key)?.[1]) as WorkloadNumber);
}

/** Rows that do not apply to a system, or a system that cannot or was not asked to run, get null with the reason. */
function markInapplicable(table: ResultTable, systems: BenchSystem[], settings: Settings): void {
  for (const name of SYSTEMS) {
    const system = systems.find((s) => s.name === name);
    for (const def of table.defs) {
      const reason = !settings.systems.includes(name)
        ? "not run (--systems)"
        : settings.etcdStoreOnly && def.needs !== "etcd"
          ? "not run (--etcd-store-only)"
          : !measured(def.key, settings.workloads)
            ? NOT_RUN_WORKLOAD
            : system?.unavailable ?? (def.needs ? system?.notApplicable[def.needs] : undefined);
      if (reason !== undefined) table.setNotApplicable(def.key, name, reason);
    }
  }
  if (!binaryExists() && !settings.etcdStoreOnly) table.setNotApplicable("w8.binary", "mcp-lockd", "dist/mcp-lockd not built (npm run build:binary)");
}

async function main(): Promise<void> {
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    process.stdout.write(USAGE);
    return;
  }
  let settings: Settings;
  try {
    settings = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n\n${USAGE}`);
      process.exit(64);
    }
    throw err;
  }
  const began = performance.now();
  const etcd = settings.systems.includes("etcd")
    ? ensureEtcd(log)
    : { path: undefined, version: undefined, unavailable: "not run (--systems)" as string };
  if (etcd.unavailable) log(`etcd: ${etcd.unavailable}`);
  const machine = machineInfo(settings, etcd.version ?? null);
  const all: BenchSystem[] = [mcpLockdSystem, etcdSystem(etcd), properLockfileSystem];
  const systems = all.filter((system) => settings.systems.includes(system.name));
  const table = new ResultTable(metricCatalog(settings), [...SYSTEMS], settings.rounds);
  markInapplicable(table, systems, settings);
  const windows: WindowRecord[] = [];
  log(`${settings.mode} mode, ${settings.rounds} round(s), ${machine.cpus} × ${machine.model}, temp dir on ${machine.fs_type}`);

  const starts = settings.workloads.includes(8) && !settings.etcdStoreOnly;
  if (starts) await warmUpStarts(settings, etcd);
  const diskFloorMs: Array<number | null> = [];
  for (let round = 0; round < settings.rounds; round++) {
    if (settings.etcdStoreOnly) {
      log(`round ${round + 1}/${settings.rounds}: the etcd store against v3lock`);
      await runEtcdStore({ settings, round, table, windows, etcd, log: (message) => log(`  ${message}`) });
      continue;
    }
    diskFloorMs.push(measureDiskFloorMs(settings.mode === "quick" ? 100 : 500));
    log(`round ${round + 1}/${settings.rounds}: disk floor ${diskFloorMs.at(-1) ?? "?"} ms per file-protocol cycle`);
    // Rotating the order (A B C, B C A, ...) keeps any drift of the machine from favouring one system.
    const runnable = systems.filter((system) => !system.unavailable);
    const order = runnable.map((_, i) => runnable[(i + round) % runnable.length]!);
    for (const system of order) {
      log(`round ${round + 1}/${settings.rounds}: ${system.name}`);
      try {
        await runSystem(system, round, settings, table, windows, (message) => log(`  ${system.name}: ${message}`));
      } catch (err) {
        // The system did not start: its whole round is null with the reason.
        const message = (err as Error).message.split("\n")[0]!;
        log(`  ${system.name} failed to run: ${(err as Error).message}`);
        for (const def of table.defs) {
          const runs = table.results(def.key, system.name);
          if (runs !== null && runs[round] === null && !def.key.startsWith("w8.")) table.set(def.key, system.name, round, null, `failed: ${message}`);
        }
      }
    }
    if (starts) {
      log(`round ${round + 1}/${settings.rounds}: start to serving`);
      await runStartup(settings, etcd, table, round, (message) => log(`  ${message}`));
    }
    if (settings.workloads.includes(9)) {
      log(`round ${round + 1}/${settings.rounds}: the etcd store against v3lock`);
      await runEtcdStore({ settings, round, table, windows, etcd, log: (message) => log(`  ${message}`) });
    }
  }

  diskFloorMs.push(measureDiskFloorMs(settings.mode === "quick" ? 100 : 500));
  const seconds = Math.round((performance.now() - began) / 100) / 10;
  const preamble = [
    `mcp-lockd vs etcd ${machine.etcd_version ?? "(not run)"} vs proper-lockfile: ${settings.mode} mode, ${settings.rounds} round(s), ${seconds} s`,
    "",
    `Machine: ${machine.cpus} × ${machine.model}, ${machine.memory}, Linux ${machine.kernel}, Node ${machine.node}, temp dir on ${machine.fs_type}; ${machine.date}; commit ${machine.git_commit}.`,
    "",
    `Disk floor (scripts/measure-fs-cycle.mjs: the file protocol's calls for one acquire+release, no service), before each round and at the end: ${diskFloorMs.map((ms) => (ms === null ? "?" : `${ms} ms`)).join(", ")}.`,
  ];
  const suspect = windows.filter((w) => w.otherCpuPct > 25);
  if (suspect.length > 0) {
    preamble.push("", `WARNING: other processes used over 25% of a core during ${suspect.map((w) => `${w.system} ${w.workload} (round ${w.round})`).join(", ")}; those figures are suspect.`);
  }
  process.stdout.write(markdownTable(table, preamble));
  const json = {
    machine: { ...machine, disk_floor_ms: diskFloorMs },
    workloads: table.toJson(),
    ratio_orientation: "mcp-lockd/X > 1 means mcp-lockd is better: mcp-lockd÷X for higher-is-better rows, X÷mcp-lockd for lower-is-better rows, per round, then the median",
    seconds,
    windows,
  };
  await mkdir(dirname(settings.outFile), { recursive: true });
  await writeFile(settings.outFile, `${JSON.stringify(json, null, 2)}\n`);
  log(`wrote ${settings.outFile} after ${seconds} s`);
  log(`wrote ${await writeRatioChart(settings.outFile)}`);
}

// Interrupted: stop the servers (load processes exit when their IPC channel closes).
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    stopAllServers();
    process.stderr.write(`bench: ${signal}: stopped\n`);
    process.exit(130);
  });
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
