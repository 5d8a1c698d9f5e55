import type { Settings } from "./options.ts";
import type { Capability } from "./systems/bench-system.ts";

/** One row of the results: the same for every system, so each has a value or a reason for none. */
export interface MetricDef {
  key: string;
  workload: string;
  metric: string;
  unit: string;
  better: "higher" | "lower";
  /** Context for reading the other rows (CPU at whatever rate was reached, counts): no ratio. */
  info?: boolean;
  /** What the system must have for this row to apply. */
  needs?: Capability;
}

const count = (n: number) => n.toLocaleString("en-US");

/** Every row, in table order; names carry the counts of the mode. */
export function metricCatalog(s: Settings): MetricDef[] {
  const rows: MetricDef[] = [];
  const add = (workload: string, key: string, list: Array<Omit<MetricDef, "workload" | "key"> & { id: string }>) => {
    for (const { id, ...def } of list) rows.push({ key: `${key}.${id}`, workload, ...def });
  };
  const cycleRows = (noun: string) => [
    { id: "rate", metric: "throughput", unit: `${noun}s/s`, better: "higher" as const },
    { id: "p50", metric: `${noun} p50`, unit: "ms", better: "lower" as const },
    { id: "p99", metric: `${noun} p99`, unit: "ms", better: "lower" as const },
    { id: "serverCpuPerOp", metric: `server CPU per ${noun}`, unit: "ms", better: "lower" as const, needs: "server" as const },
    { id: "serverCpu", metric: "server CPU", unit: "% of a core", better: "lower" as const, info: true, needs: "server" as const },
    { id: "clientCpu", metric: "client CPU (all load processes)", unit: "% of a core", better: "lower" as const, info: true },
  ];
  add("1. Uncontended acquire+release, 1 client", "w1", cycleRows("cycle"));
  add(`2. Uncontended, ${s.manyClients} clients on ${s.manyClients} resources (${s.manyClientsProcesses} load processes)`, "w2", cycleRows("cycle"));
  for (const contenders of [2, 16]) {
    const processes = Math.min(contenders, s.handoffProcesses);
    add(`3. Handoff, ${contenders} contenders on 1 resource (${processes} load processes)`, `w3-${contenders}`, [
      { id: "rate", metric: "throughput (changes of holder)", unit: "handoffs/s", better: "higher" },
      { id: "p50", metric: "handoff p50 (release response to a waiter's grant)", unit: "ms", better: "lower" },
      { id: "p90", metric: "handoff p90", unit: "ms", better: "lower" },
      { id: "p99", metric: "handoff p99", unit: "ms", better: "lower" },
      { id: "negative", metric: "grant before the release response (counted as 0 ms)", unit: "% of handoffs", better: "higher", info: true },
      { id: "retakes", metric: "grants to the contender that just released (not handoffs)", unit: "% of grants", better: "lower", info: true },
      { id: "serverCpuPerOp", metric: "server CPU per handoff", unit: "ms", better: "lower", needs: "server" },
      { id: "clientCpu", metric: "client CPU (all load processes)", unit: "% of a core", better: "lower", info: true },
    ]);
  }
  add("4. Full lifecycle, fresh lease each time, 1 client", "w4", cycleRows("cycle").filter((row) => row.id !== "serverCpu"));
  const period = (s.leaseTtlSeconds * 1000) / 3;
  const renewalRows = (leases: number) => [
    { id: "rate", metric: `renewals answered (due: ${count(Math.round((leases * 1000) / period))}/s)`, unit: "renewals/s", better: "higher" as const, needs: "keepalive" as const },
    { id: "p50", metric: "renewal round trip p50", unit: "ms", better: "lower" as const, needs: "keepalive" as const },
    { id: "p99", metric: "renewal round trip p99", unit: "ms", better: "lower" as const, needs: "keepalive" as const },
    { id: "serverCpu", metric: "server CPU", unit: "% of a core", better: "lower" as const, needs: "keepalive" as const },
    { id: "rss", metric: "server RSS", unit: "MiB", better: "lower" as const, needs: "keepalive" as const },
    { id: "alive", metric: `leases alive at the end (of ${count(leases)})`, unit: "leases", better: "higher" as const, info: true, needs: "keepalive" as const },
    { id: "clientCpu", metric: "client CPU (all load processes)", unit: "% of a core", better: "lower" as const, info: true, needs: "keepalive" as const },
  ];
  const ttl = `ttl ${s.leaseTtlSeconds} s renewed at ttl/3`;
  add(`5. KeepAlive, ${count(s.fewLeases)} leases, ${ttl}, ${s.fewLeasesStreams} streams`, "w5-few", renewalRows(s.fewLeases));
  add(`5. KeepAlive at the maximum rate, ${count(s.fewLeases)} leases, ${s.fewLeasesStreams} streams`, "w5-max", [
    { id: "rate", metric: "renewals answered", unit: "renewals/s", better: "higher", needs: "keepalive" },
    { id: "p50", metric: "renewal round trip p50 (queueing)", unit: "ms", better: "lower", info: true, needs: "keepalive" },
    { id: "p99", metric: "renewal round trip p99 (queueing)", unit: "ms", better: "lower", info: true, needs: "keepalive" },
    { id: "serverCpu", metric: "server CPU", unit: "% of a core", better: "lower", info: true, needs: "keepalive" },
    { id: "clientCpu", metric: "client CPU (all load processes)", unit: "% of a core", better: "lower", info: true, needs: "keepalive" },
  ]);
  add(`5. KeepAlive, ${count(s.manyLeases)} leases, ${ttl}, ${s.manyLeasesStreams} streams`, "w5-many", [
    // Growing from the small set to the large one: fresh resources granted while the held ones renew.
    { id: "growRate", metric: `grants/s growing the set from ${count(s.fewLeases)} to ${count(s.manyLeases)} (while renewing)`, unit: "grants/s", better: "higher", needs: "keepalive" },
    ...renewalRows(s.manyLeases),
  ]);
  add(`6. Listing with ${count(s.manyLeases)} held locks (mcp-lockd: GET /health/locks; etcd: Range over the lock prefix)`, "w6", [
    { id: "p50", metric: "listing p50 (to the last byte)", unit: "ms", better: "lower", needs: "list" },
    { id: "p99", metric: "listing p99", unit: "ms", better: "lower", needs: "list" },
    { id: "entries", metric: "entries listed", unit: "entries", better: "higher", info: true, needs: "list" },
  ]);
  add("7. Server memory", "w7", [
    { id: "idle", metric: "RSS idle, after start", unit: "MiB", better: "lower", needs: "server" },
    { id: "held", metric: `RSS holding ${count(s.manyLeases)} leases (end of the last KeepAlive window)`, unit: "MiB", better: "lower", needs: "server" },
  ]);
  add("8. Start to serving (etcd: the same etcd starts in both rows)", "w8", [
    { id: "node", metric: "mcp-lockd: node bin/mcp-lockd.js", unit: "ms", better: "lower", needs: "server" },
    { id: "binary", metric: "mcp-lockd: single executable dist/mcp-lockd", unit: "ms", better: "lower", needs: "server" },
  ]);
  // W9: the mcp-lockd column is mcp-lockd on the etcd store, the etcd column etcd's own v3lock, both on one etcd.
  const onEtcd = (list: Array<Omit<MetricDef, "workload" | "key" | "needs"> & { id: string }>) => list.map((row) => ({ ...row, needs: "etcd" as const }));
  const store = "9. On one etcd: mcp-lockd --store etcd vs etcd's v3lock";
  add(`${store}; uncontended acquire+release, 1 client, 1 replica`, "w9-cycles", onEtcd([
    { id: "rate", metric: "throughput", unit: "cycles/s", better: "higher" },
    { id: "p50", metric: "cycle p50", unit: "ms", better: "lower" },
    { id: "p99", metric: "cycle p99", unit: "ms", better: "lower" },
    { id: "serverCpuPerOp", metric: "server CPU per cycle (mcp-lockd: the replica alone, without etcd's)", unit: "ms", better: "lower", info: true },
  ]));
  add(`${store}; handoff, 2 contenders, 1 replica`, "w9-handoff", onEtcd([
    { id: "rate", metric: "throughput (changes of holder)", unit: "handoffs/s", better: "higher" },
    { id: "p50", metric: "handoff p50", unit: "ms", better: "lower" },
    { id: "p99", metric: "handoff p99", unit: "ms", better: "lower" },
  ]));
  add(`${store}; handoff, 2 contenders on 2 replicas, the waiter always on the other one (v3lock: 2 clients)`, "w9-handoff2", onEtcd([
    { id: "rate", metric: "throughput (changes of holder)", unit: "handoffs/s", better: "higher" },
    { id: "p50", metric: "handoff p50", unit: "ms", better: "lower" },
    { id: "p99", metric: "handoff p99", unit: "ms", better: "lower" },
  ]));
  return rows;
}
