import { randomBytes } from "node:crypto";
import type { EtcdCluster } from "./etcd-cluster.ts";
import { startServiceProcess, type ServiceProcess, type ServiceRuntime } from "./service-process.ts";

// Replicas of one deployment on the etcd store: several
// `mcp-lockd serve --store etcd` processes on one etcd cluster and one key
// prefix (a fresh one per call, so deployments in one cluster see nothing of
// each other). Used by test/grpc/etcd-cluster.test.ts and
// scripts/measure-etcd-failover.ts.

export interface EtcdReplicas {
  /** The key prefix they share. */
  prefix: string;
  services: ServiceProcess[];
  /** "a:1,b:2": every replica's gRPC address, in order (a failing-over client's --address). */
  addressList: string;
  /** SIGKILLs every replica still running; safe to call twice. */
  close(): Promise<void>;
}

/** The `serve` flags of a replica on `cluster` under `prefix`: every member, so a replica fails over between them. */
export function etcdServeArgs(cluster: EtcdCluster, prefix: string): string[] {
  return ["--store", "etcd", "--etcd-endpoints", cluster.clientUrls.join(","), "--etcd-prefix", prefix];
}

export async function startEtcdReplicas(cluster: EtcdCluster, count: number, options: { runtime?: ServiceRuntime } = {}): Promise<EtcdReplicas> {
  const prefix = `/mcp-lockd-replicas-${randomBytes(6).toString("hex")}/`;
  const services: ServiceProcess[] = [];
  const close = async () => {
    await Promise.all(services.map((service) => service.stop("SIGKILL")));
  };
  try {
    // One after another: two processes starting at once on two cores slow each other to a crawl.
    for (let i = 0; i < count; i++) services.push(await startServiceProcess({ extraArgs: etcdServeArgs(cluster, prefix), runtime: options.runtime }));
  } catch (err) {
    await close();
    throw err;
  }
  return { prefix, services, addressList: services.map((s) => s.grpcAddress).join(","), close };
}
