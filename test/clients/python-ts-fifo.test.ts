// Python (mcp_lockd.LockClient, in two processes) and TypeScript (the
// package's LockClient) waiters queued alternately on one resource are
// granted in exactly their queue order, with strictly increasing fencing
// tokens, through the real service.

import { test } from "node:test";
import assert from "node:assert/strict";
import { LockClient, type Lock } from "../../src/client/index.ts";
import { startServiceFixture } from "../helpers/service-process.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";
import { PythonLeaseDriver } from "./python-lease-driver.ts";

const RESOURCE = "fifo";

interface Waiter {
  name: string;
  granted: Promise<{ token: number }>;
  release(): Promise<void>;
}

test("python and typescript waiters are granted in FIFO order with increasing fencing tokens", async (t) => {
  const { service, client: observer, close } = await startServiceFixture();
  const pys = await Promise.all([PythonLeaseDriver.start("grpc", service.grpcAddress), PythonLeaseDriver.start("grpc", service.grpcAddress)]);
  const tss = [new LockClient({ address: service.grpcAddress }), new LockClient({ address: service.grpcAddress })];
  try {
    const waiters = async () => (await observer.listLocks(RESOURCE)).locks[0]?.waiters ?? 0;
    let lastToken = 0;
    for (let round = 1; round <= 2; round++) {
      const first = await tss[0]!.acquire(RESOURCE, { holder: `ts-holder-${round}`, ttl: 10_000 });
      assert.ok(Number(first.fencingToken) > lastToken);
      lastToken = Number(first.fencingToken);

      // Queue 8 waiters, alternating languages (and which one starts), each once the previous is queued.
      const queue: Waiter[] = [];
      const grantOrder: string[] = [];
      for (let i = 0; i < 8; i++) {
        const python = (i + round) % 2 === 0;
        const name = `${python ? "py" : "ts"}${i % 4 < 2 ? "A" : "B"}-${round}-${i}`;
        let waiter: Waiter;
        if (python) {
          const driver = pys[i % 4 < 2 ? 0 : 1]!;
          const reply = driver.call({ op: "lock", id: name, resource: RESOURCE, ttl: 10, wait: 60, holder: name });
          waiter = {
            name,
            granted: reply.then((r) => {
              assert.ok(r.ok, `${name}: ${JSON.stringify(r)}`);
              return { token: r.lease!.fencing_token };
            }),
            release: async () => void (await driver.ok({ op: "release", id: name })),
          };
        } else {
          const ts = tss[i % 4 < 2 ? 0 : 1]!;
          const lock: Promise<Lock> = ts.acquire(RESOURCE, { holder: name, ttl: 10_000, wait: 60_000 });
          waiter = {
            name,
            granted: lock.then((l) => ({ token: Number(l.fencingToken) })),
            release: async () => (await lock).release(),
          };
        }
        waiter.granted.then(() => grantOrder.push(name), () => {});
        queue.push(waiter);
        await waitFor(async () => (await waiters()) === i + 1, `${name} to be queued`, 20_000);
      }

      // Hand the resource down the queue: each grant comes after the previous release, in order.
      await first.release();
      for (let i = 0; i < queue.length; i++) {
        const waiter = queue[i]!;
        const { token } = await withTimeout(waiter.granted, 20_000, `${waiter.name}'s grant`);
        assert.deepEqual(grantOrder, queue.slice(0, i + 1).map((w) => w.name), "grant order");
        assert.ok(token > lastToken, `${waiter.name} got token ${token} after ${lastToken}`);
        lastToken = token;
        await waiter.release();
      }
      t.diagnostic(`round ${round}: ${grantOrder.join(" ")}`);
    }
    assert.deepEqual((await observer.listLocks(RESOURCE)).locks, []);
  } finally {
    for (const ts of tss) ts.close();
    await Promise.all(pys.map((py) => py.close()));
    await close();
  }
});
