import { createServer } from "node:net";
import { startServiceProcess, type ServiceProcess } from "./service-process.ts";
import { makeTempDir } from "./temp-dir.ts";

// Replicas of one service for failover tests: several `mcp-lockd serve`
// processes on ONE lock dir. The file store coordinates them through the
// lease files (any of them renews or releases a lease another granted, by its
// lease_id_sha256), so they stand in for replicas on separate hosts.

export interface Replicas {
  dir: string;
  services: ServiceProcess[];
  /** "a:1,b:2": every replica's address, in order. */
  addressList: string;
  /** Stops every replica still running (SIGKILL) and removes the lock dir; safe to call twice. */
  close(): Promise<void>;
}

export async function startReplicas(count: number): Promise<Replicas> {
  const temp = await makeTempDir("mcp-lockd-replicas-");
  const services: ServiceProcess[] = [];
  const close = async () => {
    await Promise.all(services.map((service) => service.stop("SIGKILL")));
    await temp.remove();
  };
  try {
    for (let i = 0; i < count; i++) services.push(await startServiceProcess({ lockDir: temp.path }));
  } catch (err) {
    await close();
    throw err;
  }
  return { dir: temp.path, services, addressList: services.map((s) => s.grpcAddress).join(","), close };
}

/** A loopback address with nothing listening on it (a port taken, then freed). */
export async function deadAddress(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}
