// The HTTP shim against slow and many clients (slowloris): headers that never
// finish are cut off at the headers timeout, connections over the cap are
// closed on arrival, and /healthz is answered throughout.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { LockManager } from "../../src/core/lock-manager.ts";
import { LeaseFileStore } from "../../src/store/lease-file-store.ts";
import { startHttpServer, type RunningHttpServer } from "../../src/http/health-server.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { withTimeout } from "../helpers/wait.ts";

let temp: Awaited<ReturnType<typeof makeTempDir>>;
let manager: LockManager;
let http: RunningHttpServer;
const sockets: Socket[] = [];

before(async () => {
  temp = await makeTempDir();
  manager = new LockManager({ store: new LeaseFileStore({ dir: temp.path }) });
  await manager.start();
  http = await startHttpServer(manager, "127.0.0.1:0", { limits: { headersTimeoutMs: 500, requestTimeoutMs: 1_000, maxConnections: 3 } });
});

after(async () => {
  for (const socket of sockets) socket.destroy();
  await http?.stop();
  manager?.close();
  await temp?.remove();
});

async function open(): Promise<Socket> {
  const port = Number(http.address.slice(http.address.lastIndexOf(":") + 1));
  const socket = connect({ host: "127.0.0.1", port });
  socket.on("error", () => {});
  sockets.push(socket);
  await once(socket, "connect");
  return socket;
}

test("a client that never finishes its headers is cut off; others are served meanwhile", async () => {
  const slow = await open();
  slow.write("GET /health/locks HTTP/1.1\r\nHost: x\r\n");
  const drip = setInterval(() => slow.writable && slow.write("X"), 100);
  const started = Date.now();
  const response = await fetch(`http://${http.address}/healthz`);
  assert.equal(response.status, 200);
  let answer = "";
  slow.setEncoding("utf8").on("data", (chunk: string) => (answer += chunk));
  await withTimeout(once(slow, "close"), 5_000, "the slow client to be cut off");
  clearInterval(drip);
  assert.ok(Date.now() - started < 3_000, `cut off after ${Date.now() - started} ms`);
  assert.match(answer, /^HTTP\/1\.1 408/, "told why: request timeout");
});

test("connections over the cap are closed on arrival", async () => {
  const idle = await Promise.all([open(), open(), open()]);
  const extra = await open();
  await withTimeout(once(extra, "close"), 3_000, "the fourth connection to be closed");
  for (const socket of idle) socket.destroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal((await fetch(`http://${http.address}/healthz`)).status, 200, "served once there is room");
});
