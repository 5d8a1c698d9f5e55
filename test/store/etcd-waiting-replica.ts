import { systemClock } from "../../src/core/clock.ts";
import { LockManager } from "../../src/core/lock-manager.ts";
import { EtcdClient } from "../../src/store/etcd/etcd-client.ts";
import { EtcdLeaseStore } from "../../src/store/etcd/etcd-lease-store.ts";

// A replica that only waits for one resource (argv: endpoints, prefix,
// resource), for tests that SIGKILL it: says "waiting" once its waiter has
// its place in the shared queue, and "granted" if it ever gets the lease.

const [endpoints, prefix, resource] = process.argv.slice(2) as [string, string, string];
const store = new EtcdLeaseStore({ client: new EtcdClient({ endpoints: endpoints.split(",") }), prefix, clock: systemClock });
const manager = new LockManager({ store, clock: systemClock });
await manager.start();
const granted = manager.acquire({ resource, holder: "waiting-replica", ttlMs: 10_000, waitMs: 60_000 });
granted.then(() => process.stdout.write("granted\n"), (err: Error) => process.stdout.write(`failed: ${err.message}\n`));
while (store.queuedCount(resource) < 1) await new Promise((resolve) => setTimeout(resolve, 10));
process.stdout.write("waiting\n");
