import { spawnSync } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { cpus, release, tmpdir, totalmem } from "node:os";
import { BINARY_PATH, REPO_ROOT } from "./paths.ts";
import type { Settings } from "./options.ts";

export interface MachineInfo {
  cpus: number;
  model: string;
  memory: string;
  kernel: string;
  node: string;
  etcd_version: string | null;
  /** The file system of the temp dir, where every lock dir and etcd's data dir go. */
  fs_type: string;
  date: string;
  git_commit: string;
  mode: Settings["mode"];
  rounds: number;
  /** The single executable's build time, if there is one (W8 uses it as it is). */
  binary_built: string | null;
}

/** The file system holding `path`, from the longest matching mount point. */
function fileSystemOf(path: string): string {
  try {
    let best: string[] | undefined;
    for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
      const mount = line.split(" ");
      const point = mount[1];
      if (point === undefined || !(path === point || path.startsWith(point.endsWith("/") ? point : `${point}/`))) continue;
      if (!best || point.length > best[1]!.length) best = mount;
    }
    return best ? `${best[2]} (${best[0]} on ${best[1]})` : "unknown";
  } catch {
    return "unknown";
  }
}

function gitCommit(): string {
  const run = (args: string[]) => spawnSync("git", args, { cwd: REPO_ROOT, encoding: "utf8" });
  const head = run(["rev-parse", "HEAD"]);
  if (head.status !== 0) return "unknown";
  const dirty = (run(["status", "--porcelain", "--untracked-files=no"]).stdout ?? "").trim() !== "";
  return `${head.stdout.trim()}${dirty ? " (with uncommitted changes)" : ""}`;
}

export function machineInfo(settings: Settings, etcdVersion: string | null): MachineInfo {
  const cpuList = cpus();
  let binaryBuilt: string | null = null;
  try {
    binaryBuilt = statSync(BINARY_PATH).mtime.toISOString();
  } catch {
    // not built
  }
  return {
    cpus: cpuList.length,
    model: cpuList[0]?.model.trim() ?? "unknown",
    memory: `${(totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    kernel: release(),
    node: process.version,
    etcd_version: etcdVersion,
    fs_type: fileSystemOf(tmpdir()),
    date: new Date().toISOString(),
    git_commit: gitCommit(),
    mode: settings.mode,
    rounds: settings.rounds,
    binary_built: binaryBuilt,
  };
}
