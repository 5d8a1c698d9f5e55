import type { BenchSystem, StartedSystem } from "./bench-system.ts";
import { makeTempDir } from "./temp-dir.ts";

/** proper-lockfile: a library, so "starting" it is making the directory its lock files go in. */
export const properLockfileSystem: BenchSystem = {
  name: "proper-lockfile",
  unavailable: undefined,
  notApplicable: {
    server: "a library: no server process (its work is in the clients' CPU)",
    keepalive: "no leases: a held lock's mtime is refreshed by its own process; nothing to renew over a stream",
    list: "no listing: finding the holders means scanning the lock dir",
    etcd: "a file lock: it runs on no etcd",
  },
  async start(): Promise<StartedSystem> {
    const dir = await makeTempDir("proper-lockfile-bench-");
    return { target: { system: "proper-lockfile", lockDir: dir.path }, serverPid: undefined, stop: () => dir.remove() };
  },
};
