import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import type { BenchSystem, StartedSystem } from "./bench-system.ts";
import { freePort } from "./free-port.ts";
import { envWithout, startServerProcess, type ServerProcess } from "./server-process.ts";
import { makeTempDir } from "./temp-dir.ts";

/** Where etcd is and which version, or why it cannot be run. */
export type EtcdInstall = { path: string; version: string; unavailable: undefined } | { path: undefined; version: undefined; unavailable: string };

function findOnPath(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? "").split(delimiter), "/usr/bin"]) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function apt(args: string[]): { ok: boolean; output: string } {
  const result = spawnSync("apt-get", args, {
    encoding: "utf8",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    timeout: 600_000,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return { ok: result.status === 0, output: `${result.stdout ?? ""}${result.stderr ?? ""}${result.error ? result.error.message : ""}` };
}

/**
 * etcd 3.4 from Debian's etcd-server: found on PATH, or installed with
 * apt-get when missing (the benchmark runs as root on these machines; if it
 * is not, or the install fails, etcd's results are null with the reason).
 */
export function ensureEtcd(log: (message: string) => void): EtcdInstall {
  let path = findOnPath("etcd");
  if (!path) {
    if (process.getuid?.() !== 0) return { path: undefined, version: undefined, unavailable: "etcd is not installed, and installing Debian's etcd-server needs root" };
    log("etcd is missing: apt-get install -y etcd-server");
    let install = apt(["install", "-y", "-qq", "etcd-server"]);
    if (!install.ok) {
      // A fresh machine may have no package lists yet.
      apt(["update", "-qq"]);
      install = apt(["install", "-y", "-qq", "etcd-server"]);
    }
    path = findOnPath("etcd");
    if (!path) return { path: undefined, version: undefined, unavailable: `apt-get install etcd-server failed: ${install.output.trim().split("\n").slice(-3).join(" / ")}` };
  }
  const versionRun = spawnSync(path, ["--version"], { encoding: "utf8", timeout: 10_000 });
  const version = /etcd Version:\s*(\S+)/.exec(versionRun.stdout ?? "")?.[1];
  if (!version) return { path: undefined, version: undefined, unavailable: `${path} --version did not answer: ${versionRun.stderr ?? versionRun.error?.message ?? ""}` };
  return { path, version, unavailable: undefined };
}

/**
 * A one-member etcd on loopback: data dir in `dataDir`, free non-default
 * ports, default durability (WAL fsynced per commit), ETCD_* variables of the
 * caller's environment left out so only the command line configures it.
 */
export async function startEtcd(etcdPath: string, dataDir: string): Promise<{ server: ServerProcess; grpcAddress: string }> {
  const clientPort = await freePort();
  const peerPort = await freePort();
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const server = await startServerProcess({
    command: etcdPath,
    args: [
      "--name", "bench",
      "--data-dir", dataDir,
      "--listen-client-urls", client,
      "--advertise-client-urls", client,
      "--listen-peer-urls", peer,
      "--initial-advertise-peer-urls", peer,
      "--initial-cluster", `bench=${peer}`,
      "--logger", "zap",
      "--log-outputs", "stderr",
    ],
    // 3.4 with zap logs "serving client traffic insecurely" once it serves; older loggers say "ready to serve client requests".
    ready: /serving client traffic|ready to serve client requests/,
    env: envWithout("ETCD_"),
  });
  return { server, grpcAddress: `127.0.0.1:${clientPort}` };
}

export function etcdSystem(install: EtcdInstall): BenchSystem {
  return {
    name: "etcd",
    unavailable: install.unavailable,
    notApplicable: {},
    async start(): Promise<StartedSystem> {
      if (!install.path) throw new Error(install.unavailable);
      const dir = await makeTempDir("etcd-bench-");
      let started: Awaited<ReturnType<typeof startEtcd>>;
      try {
        started = await startEtcd(install.path, join(dir.path, "data"));
      } catch (err) {
        await dir.remove();
        throw err;
      }
      return {
        target: { system: "etcd", grpcAddress: started.grpcAddress },
        serverPid: started.server.pid,
        async stop() {
          await started.server.stop();
          await dir.remove();
        },
      };
    },
  };
}
