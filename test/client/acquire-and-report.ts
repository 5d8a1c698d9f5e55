// Child process for paused-grant.test.ts: waits for a lock and prints one JSON
// line saying what acquire() returned (or threw), then releases and exits.
import { LockClient } from "../../src/index.ts";

const [address, resource] = process.argv.slice(2) as [string, string];
const client = new LockClient({ address });
try {
  const lock = await client.acquire(resource, { ttl: 1_000, wait: 30_000 });
  console.log(JSON.stringify({ ok: true, token: String(lock.fencingToken), expiresInMs: lock.expiresAt.getTime() - Date.now(), lost: lock.signal.aborted }));
  await lock.release().catch(() => {});
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: (err as Error).name, reason: (err as { reason?: string }).reason, message: (err as Error).message }));
}
client.close();
