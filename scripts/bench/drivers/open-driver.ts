import type { Target } from "../protocol.ts";
import type { LockDriver } from "./driver.ts";

/** The driver for the target's system; imported on demand so a load process loads one client library. */
export async function openDriver(target: Target): Promise<LockDriver> {
  switch (target.system) {
    case "mcp-lockd":
      return new (await import("./mcp-lockd.ts")).McpLockdDriver(target);
    case "etcd":
      return new (await import("./etcd.ts")).EtcdDriver(target);
    case "proper-lockfile":
      if (!target.lockDir) throw new Error("proper-lockfile target needs a lock dir");
      return new (await import("./proper-lockfile.ts")).ProperLockfileDriver(target.lockDir);
  }
}
