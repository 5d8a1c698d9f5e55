import { join } from "node:path";
import type { Settings } from "../options.ts";
import type { SystemName } from "../protocol.ts";
import { formatNumber } from "../report.ts";
import type { ResultTable } from "../results.ts";
import { median } from "../stats.ts";
import { startEtcd, type EtcdInstall } from "../systems/etcd.ts";
import { binaryExists, startMcpLockd } from "../systems/mcp-lockd.ts";
import type { ServerProcess } from "../systems/server-process.ts";
import { makeTempDir } from "../systems/temp-dir.ts";

interface Way {
  name: string;
  system: SystemName;
  /** The W8 rows this way fills. */
  keys: string[];
  start(dir: string): Promise<ServerProcess>;
}

/** Each way of starting a server that applies: mcp-lockd under node, its single executable when built, etcd. */
function ways(settings: Settings, etcd: EtcdInstall): Way[] {
  const list: Way[] = [];
  if (settings.systems.includes("mcp-lockd")) {
    list.push({ name: "mcp-lockd (node)", system: "mcp-lockd", keys: ["w8.node"], start: (dir) => startMcpLockd("node", dir) });
    if (binaryExists()) list.push({ name: "mcp-lockd (binary)", system: "mcp-lockd", keys: ["w8.binary"], start: (dir) => startMcpLockd("binary", dir) });
  }
  if (settings.systems.includes("etcd") && etcd.path) {
    const path = etcd.path;
    list.push({ name: "etcd", system: "etcd", keys: ["w8.node", "w8.binary"], start: async (dir) => (await startEtcd(path, join(dir, "data"))).server });
  }
  return list;
}

/** One start in a fresh dir: ms from spawn to its serving line; then stopped. */
async function timeStart(way: Way): Promise<number> {
  const dir = await makeTempDir("bench-start-");
  try {
    const server = await way.start(dir.path);
    await server.stop();
    return server.readyMs;
  } finally {
    await dir.remove();
  }
}

/** Unmeasured starts that fill the page cache (and Node's compile cache) before any is timed. */
export async function warmUpStarts(settings: Settings, etcd: EtcdInstall): Promise<void> {
  for (const way of ways(settings, etcd)) await timeStart(way).catch(() => {});
}

/**
 * W8 for one round: the ways take turns (A B C A B C) `startRepeats` times;
 * the round's value for each is the median of its starts.
 */
export async function runStartup(settings: Settings, etcd: EtcdInstall, table: ResultTable, round: number, log: (message: string) => void): Promise<void> {
  const list = ways(settings, etcd);
  const times = new Map<Way, number[]>(list.map((way) => [way, []]));
  const failures = new Map<Way, string>();
  for (let i = 0; i < settings.startRepeats; i++) {
    for (const way of list) {
      try {
        times.get(way)!.push(await timeStart(way));
      } catch (err) {
        failures.set(way, (err as Error).message.split("\n")[0]!);
      }
    }
  }
  for (const way of list) {
    const samples = times.get(way)!;
    const value = samples.length > 0 ? median(samples) : null;
    for (const key of way.keys) {
      if (table.results(key, way.system) !== null) table.set(key, way.system, round, value, failures.get(way));
    }
    log(`w8: ${way.name} ${value === null ? `failed: ${failures.get(way)}` : `${formatNumber(value)} ms`} to serving`);
  }
}
