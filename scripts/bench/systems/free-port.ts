import { createServer } from "node:net";

/** etcd's default ports: never used, so the benchmark cannot collide with a real etcd. */
const AVOID = new Set([2379, 2380]);

/**
 * A loopback port free right now, for servers (etcd) that cannot be told to
 * pick their own and report it. Another process could take it before the
 * server binds; then the server fails to start with a clear error.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const address = server.address();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (address && typeof address === "object" && !AVOID.has(address.port)) return address.port;
  }
}
