// Child process for keep-alive.test.ts: acquires a short lease, lets it renew
// twice, releases it and returns without closing the client. The process
// must then exit by itself.
import { LockClient } from "../../src/index.ts";
import { keepAliveDiagnostics } from "../../src/client/diagnostics.ts";

const client = new LockClient({ address: process.argv[2] });
const lock = await client.acquire("exit-after-release", { ttl: 1_000 });
let renewed = 0;
await new Promise<void>((resolve) =>
  client[keepAliveDiagnostics].on("renewed", () => {
    if (++renewed === 2) resolve();
  }),
);
await lock.release();
console.log(`released after ${renewed} renewals`);
