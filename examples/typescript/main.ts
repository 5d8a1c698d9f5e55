// A report writer that must never run twice at once, whoever else (another
// process, another machine sharing the lock dir's service) tries.
//
//   mcp-lockd serve &          # or: npx mcp-lockd serve
//   npm run build && npm start # MCP_LOCKD_ADDRESS=host:port to point elsewhere
import { appendFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { LockClient, ResourceBusyError } from "mcp-lockd";

const output = process.argv[2] ?? "report.log";

// Closing the client at the end of the module releases anything still held.
await using client = new LockClient(); // MCP_LOCKD_ADDRESS, else 127.0.0.1:50051

// 1. `await using`: released when the block ends, however it ends. The lease
//    is renewed in the background; lock.signal fires if it is ever lost.
{
  await using lock = await client.acquire("example-report", { ttl: 5_000, wait: 30_000 });
  console.log(`acquired ${lock.resource} as ${lock.holder}, fencing token ${lock.fencingToken}`);
  for (let step = 1; step <= 3; step++) {
    lock.signal.throwIfAborted(); // stop at once if the lock was lost
    // Pass the fencing token along so that the storage can refuse a stale writer.
    await appendFile(output, `token=${lock.fencingToken} step=${step}\n`);
    await sleep(100, undefined, { signal: lock.signal });
  }
}
console.log("released");

// 2. withLock: acquire, run, release (also when the callback throws).
const lines = await client.withLock("example-report", { ttl: 5_000, wait: 30_000 }, async (signal, lock) => {
  signal.throwIfAborted();
  await appendFile(output, `token=${lock.fencingToken} summary\n`);
  return 4;
});
console.log(`withLock wrote ${lines} lines in all`);

// 3. Busy resources: try once, and say who is in the way.
await using _held = await client.acquire("example-busy", { holder: "example-holder" });
try {
  await client.acquire("example-busy");
} catch (err) {
  if (!(err instanceof ResourceBusyError)) throw err;
  console.log(`example-busy is held by ${err.holder} until ${err.expiresAt?.toISOString()}`);
}
