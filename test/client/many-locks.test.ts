import assert from "node:assert/strict";
import { test } from "node:test";
import { LockClient } from "../../src/index.ts";
import { keepAliveStreams } from "../helpers/service-metrics.ts";
import { startServiceProcess } from "../helpers/service-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { waitFor } from "../helpers/wait.ts";

// Each lock opens the client's KeepAlive stream with its first lease and
// closes it after its last. A close that leaves the stream open at either
// end (a cancel grpc-js lost while the stream was still being opened) made
// a client stop getting answers once it had taken as many locks as the
// service allows streams per connection.
test("one LockClient takes and releases more locks than the service allows streams per connection", async () => {
  const temp = await makeTempDir("mcp-lockd-many-locks-");
  const service = await startServiceProcess({ lockDir: temp.path, extraArgs: ["--max-streams-per-connection", "10"] });
  const client = new LockClient({ address: service.grpcAddress });
  try {
    for (let i = 0; i < 30; i++) {
      const lock = await client.acquire("many", { ttl: 10_000 });
      await lock.release();
    }
    await waitFor(async () => (await keepAliveStreams(service.httpAddress)) === 0, "no KeepAlive stream left open on the service", 5_000);
    assert.equal(await keepAliveStreams(service.httpAddress), 0);
  } finally {
    client.close();
    await service.stop("SIGKILL");
    await temp.remove();
  }
});
