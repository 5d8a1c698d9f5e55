import type { TestContext } from "node:test";
import { join } from "node:path";
import { LockManager } from "../../src/core/lock-manager.ts";
import type { FileSystem } from "../../src/store/file-system.ts";
import { LeaseFileStore } from "../../src/store/lease-file-store.ts";
import { ManualClock, settle } from "./manual-clock.ts";
import { makeTempDir } from "./temp-dir.ts";

/**
 * A started LockManager over a LeaseFileStore in a fresh temp dir, on a
 * manual clock (and `fs` when given); closed and removed after the test,
 * which is kept alive meanwhile so that a wait that never ends fails on the
 * test's timeout.
 */
export async function managerOnFiles(t: TestContext, fs?: FileSystem): Promise<{ dir: string; clock: ManualClock; manager: LockManager }> {
  const keepAlive = setInterval(() => {}, 1_000);
  const temp = await makeTempDir();
  const dir = join(temp.path, "locks");
  const clock = new ManualClock();
  const manager = new LockManager({ store: new LeaseFileStore({ dir, clock, fs }), clock });
  await manager.start();
  t.after(async () => {
    clearInterval(keepAlive);
    manager.close();
    await settle();
    await temp.remove();
  });
  return { dir, clock, manager };
}
