// npm run build && node dist/scripts/measure-etcd-failover.js [--runs N] [--runtime node|binary|deno]
//
// The failover timings of the etcd store (docs/etcd.md, "Measured"): two
// `mcp-lockd serve --store etcd` replicas on a three-member etcd on loopback
// (Debian's etcd-server, election timeout 500 ms, as the tests run it), over
// N runs (default 5) of each:
// - replica SIGKILL → first renewal through the other replica: a LockClient
//   given both addresses holds three leases (ttl 2 s) renewed through the
//   first replica, which is SIGKILLed; the time until the client's first
//   renewal confirmed by the second;
// - etcd leader SIGKILL → first grant: a client on each replica acquires and
//   releases (try-once, its own resource) back to back; the leader is
//   SIGKILLed, and the time until the first grant of an Acquire sent after
//   the kill (UNAVAILABLE answers are tried again at once). The member is
//   restarted before the next run, so the leader killed varies: the first
//   member listed (the one the replicas talk to) or another.
// Prints one line per run and min/median/max; a script, not a test.
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { LockClient, UnavailableError } from "../src/index.ts";
import { startEtcdCluster, type EtcdCluster } from "../test/helpers/etcd-cluster.ts";
import { startEtcdReplicas } from "../test/helpers/etcd-replicas.ts";
import { nextRenewal } from "../test/helpers/keep-alive-events.ts";
import { testRuntime } from "../test/helpers/service-process.ts";
import { withTimeout } from "../test/helpers/wait.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "5" }, runtime: { type: "string" } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs ${values.runs}: expected a whole number of at least 1`);
const runtime = testRuntime({ MCP_LOCKD_TEST_RUNTIME: values.runtime });

async function replicaKill(cluster: EtcdCluster): Promise<number> {
  const replicas = await startEtcdReplicas(cluster, 2, { runtime });
  const [a, b] = replicas.services.map((s) => s.grpcAddress) as [string, string];
  const client = new LockClient({ address: replicas.addressList });
  try {
    const locks = await Promise.all(["m-1", "m-2", "m-3"].map((resource) => client.acquire(resource, { ttl: 2_000 })));
    await withTimeout(nextRenewal(client, "m-1", a), 5_000, "a renewal through the first replica");
    const elsewhere = nextRenewal(client, "m-1", b);
    const killedAt = performance.now();
    await replicas.services[0]!.stop("SIGKILL");
    const first = await withTimeout(elsewhere, 5_000, "a renewal through the second replica");
    const lost = locks.filter((lock) => lock.signal.aborted);
    if (lost.length > 0) throw new Error(`${lost.length} leases lost after the replica's SIGKILL`);
    await Promise.all(locks.map((lock) => lock.release()));
    return first.at - killedAt;
  } finally {
    client.close();
    await replicas.close();
  }
}

async function leaderKill(cluster: EtcdCluster): Promise<{ ms: number; leader: string; unavailable: number }> {
  const replicas = await startEtcdReplicas(cluster, 2, { runtime });
  const clients = replicas.services.map((s) => new LockClient({ address: s.grpcAddress }));
  let killedAt = Infinity;
  let firstAfter: number | undefined;
  let unavailable = 0;
  let stop = false;
  const cycle = async (client: LockClient, resource: string) => {
    while (!stop) {
      const sentAt = performance.now();
      try {
        const lock = await client.acquire(resource, { ttl: 5_000 });
        if (sentAt > killedAt) firstAfter ??= performance.now();
        await lock.release();
      } catch (err) {
        if (!(err instanceof UnavailableError)) throw err;
        unavailable++;
      }
    }
  };
  const leader = await cluster.leader();
  try {
    const cycling = Promise.all(clients.map((client, i) => cycle(client, `leader-kill-${i}`)));
    // Let the cycles get going first.
    await new Promise((resolve) => setTimeout(resolve, 500));
    killedAt = performance.now();
    await leader.kill("SIGKILL");
    const deadline = performance.now() + 30_000;
    while (firstAfter === undefined && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    stop = true;
    await cycling;
    if (firstAfter === undefined) throw new Error("no grant within 30 s of the leader's SIGKILL");
    return { ms: firstAfter - killedAt, leader: leader === cluster.members[0] ? `${leader.name} (first listed)` : leader.name, unavailable };
  } finally {
    stop = true;
    for (const client of clients) client.close();
    await replicas.close();
    if (!leader.child) await leader.restart();
    await cluster.leader(20_000);
  }
}

function summary(label: string, values: number[]): string {
  const sorted = [...values].sort((x, y) => x - y);
  const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
  return `${label}: min ${sorted[0]!.toFixed(0)} ms, median ${median.toFixed(0)} ms, max ${sorted.at(-1)!.toFixed(0)} ms (${values.length} runs)`;
}

const cluster = await startEtcdCluster(3);
try {
  process.stdout.write(`etcd failover, ${runs} runs, service under ${runtime}\n`);
  const replicaMs: number[] = [];
  for (let run = 1; run <= runs; run++) {
    const ms = await replicaKill(cluster);
    replicaMs.push(ms);
    process.stdout.write(`run ${run}: replica SIGKILL → first renewal through the other: ${ms.toFixed(1)} ms\n`);
  }
  const leaderMs: number[] = [];
  for (let run = 1; run <= runs; run++) {
    const { ms, leader, unavailable } = await leaderKill(cluster);
    leaderMs.push(ms);
    process.stdout.write(`run ${run}: leader ${leader} SIGKILL → first grant: ${ms.toFixed(0)} ms (${unavailable} UNAVAILABLE answers meanwhile)\n`);
  }
  process.stdout.write(`${summary("replica SIGKILL → first renewal through the other replica", replicaMs)}\n`);
  process.stdout.write(`${summary("etcd leader SIGKILL → first grant", leaderMs)}\n`);
} finally {
  await cluster.close();
}
