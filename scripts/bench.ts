// Benchmark for mcp-lockd: starts the real service as a child process (as
// users run it) and drives it with grpc-js clients over loopback.
//
//   npm run bench              # ~5 s per workload, well under 2 minutes
//   node dist/scripts/bench.js --quick   # ~1 s per workload
//
// Prints a Markdown table on stdout (progress goes to stderr) and writes the
// JSON results to bench/results/latest.json.

import { credentials, type ServiceError } from "@grpc/grpc-js";
import { execFileSync } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { cpus, platform, release, arch } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { LockServiceClient, type Lease } from "../src/gen/mcplockd/v1/lock.ts";
import { makeTempDir } from "../test/helpers/temp-dir.ts";
import { startServiceProcess, type ServiceProcess } from "../test/helpers/service-process.ts";
import { KeepAliveStream } from "../test/helpers/lock-client.ts";

// ---------------------------------------------------------------- settings

const QUICK = process.argv.includes("--quick");
if (process.argv.slice(2).some((arg) => arg !== "--quick")) {
  process.stderr.write("usage: node dist/scripts/bench.js [--quick]\n");
  process.exit(64);
}

const MEASURE_MS = QUICK ? 1_000 : 5_000;
const WARMUP_MS = QUICK ? 300 : 1_000;
/** The first workload also warms up the JIT and the file system paths. */
const FIRST_WARMUP_MS = QUICK ? 500 : 3_000;
const KEEPALIVE_SEQUENTIAL = QUICK ? 250 : 1_000;
const KEEPALIVE_WARMUP = QUICK ? 50 : 200;
const TTL = { seconds: 60, nanos: 0 };
const WAIT = { seconds: 30, nanos: 0 };

/** dist/scripts/bench.js → repository root. */
const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "latest.json");

// ---------------------------------------------------------------- client

/**
 * A thin promise client. `ownConnection` gives the client its own HTTP/2
 * connection: grpc-js otherwise shares one subchannel (one TCP connection)
 * among all clients of the same address and options in a process.
 */
class BenchClient {
  readonly raw: LockServiceClient;

  constructor(address: string, ownConnection: boolean) {
    this.raw = new LockServiceClient(
      address,
      credentials.createInsecure(),
      ownConnection ? { "grpc.use_local_subchannel_pool": 1 } : {},
    );
  }

  acquire(resource: string, holder: string, wait: boolean): Promise<Lease> {
    return new Promise((resolve, reject) =>
      this.raw.acquire(
        { resource, holder, ttl: TTL, waitTimeout: wait ? WAIT : undefined, metadata: {} },
        (err: ServiceError | null, response) => {
          if (err) reject(err);
          else if (!response.lease) reject(new Error(`Acquire of ${resource} answered without a lease`));
          else resolve(response.lease);
        },
      ),
    );
  }

  release(leaseId: string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.raw.release({ leaseId }, (err: ServiceError | null, response) => {
        if (err) reject(err);
        else if (!response.released) reject(new Error("Release answered released=false"));
        else resolve();
      }),
    );
  }

  keepAlive(): KeepAliveStream {
    return new KeepAliveStream(this.raw.keepAlive());
  }

  close(): void {
    this.raw.close();
  }
}

// ---------------------------------------------------------------- measuring

const CLK_TCK = clockTicksPerSecond();

function clockTicksPerSecond(): number {
  try {
    const value = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    return Number.isFinite(value) && value > 0 ? value : 100;
  } catch {
    return 100;
  }
}

interface CpuTimes {
  user: number;
  system: number;
}

/** utime and stime of a process in seconds, from /proc/<pid>/stat. */
async function processCpuSeconds(pid: number): Promise<CpuTimes> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start at field 3.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[14 - 3]) / CLK_TCK, system: Number(fields[15 - 3]) / CLK_TCK };
}

/** VmRSS and VmHWM of a process in MiB, from /proc/<pid>/status. */
async function processMemoryMiB(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rss: kib("VmRSS") / 1024, hwm: kib("VmHWM") / 1024 };
}

interface MachineTicks {
  total: number;
  idle: number;
  iowait: number;
}

/** Whole-machine CPU ticks from the first line of /proc/stat. */
async function machineTicks(): Promise<MachineTicks> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n", 1)[0] ?? "";
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  return { total: ticks.reduce((a, b) => a + b, 0), idle: ticks[3] ?? 0, iowait: ticks[4] ?? 0 };
}

function clientCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles of latencies in ms. */
function percentiles(samples: number[]): Percentiles {
  if (samples.length === 0) return { p50: NaN, p90: NaN, p99: NaN, max: NaN };
  const sorted = Float64Array.from(samples).sort();
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1]! };
}

/**
 * A warm-up then a measured window. Workers keep going while `running`; an
 * operation counts when it completes inside the window.
 */
class Window {
  state: "warmup" | "measure" | "stopped" = "warmup";
  startedAt = 0;
  endedAt = 0;
  private serverCpuStart: CpuTimes = { user: 0, system: 0 };
  private clientCpuStart = 0;
  private machineStart: MachineTicks = { total: 0, idle: 0, iowait: 0 };
  /** Share of all the machine's CPU time that was busy (not idle, not iowait), and in iowait. */
  machineBusy = 0;
  machineIowait = 0;
  /** Busy CPU seconds on the machine outside the server and this process (other load, kernel threads). */
  otherCpu = 0;
  /** Server CPU seconds (user + system) in the window. */
  serverCpu = 0;
  serverSystemCpu = 0;
  clientCpu = 0;
  readonly latencies: number[] = [];

  constructor(private readonly serverPid: number) {}

  get running(): boolean {
    return this.state !== "stopped";
  }

  record(latencyMs: number): void {
    if (this.state === "measure") this.latencies.push(latencyMs);
  }

  async begin(): Promise<void> {
    this.serverCpuStart = await processCpuSeconds(this.serverPid);
    this.clientCpuStart = clientCpuSeconds();
    this.machineStart = await machineTicks();
    this.startedAt = performance.now();
    this.state = "measure";
  }

  async end(): Promise<void> {
    this.state = "stopped";
    this.endedAt = performance.now();
    this.clientCpu = clientCpuSeconds() - this.clientCpuStart;
    const machine = await machineTicks();
    const total = Math.max(1, machine.total - this.machineStart.total);
    const idle = machine.idle - this.machineStart.idle;
    const iowait = machine.iowait - this.machineStart.iowait;
    this.machineBusy = (total - idle - iowait) / total;
    this.machineIowait = iowait / total;
    const cpu = await processCpuSeconds(this.serverPid);
    this.serverSystemCpu = cpu.system - this.serverCpuStart.system;
    this.serverCpu = cpu.user + cpu.system - this.serverCpuStart.user - this.serverCpuStart.system;
    const busySeconds = (total - idle - iowait) / CLK_TCK;
    this.otherCpu = Math.max(0, busySeconds - this.serverCpu - this.clientCpu);
  }

  get seconds(): number {
    return (this.endedAt - this.startedAt) / 1000;
  }

  /** Runs workers through warm-up and the window, then waits for them to stop. */
  static async run(serverPid: number, warmupMs: number, measureMs: number, start: (window: Window) => Array<Promise<void>>): Promise<Window> {
    const window = new Window(serverPid);
    const workers = start(window);
    // Fail fast: a worker error must not be hidden behind the sleeps.
    const failed = Promise.all(workers).then(() => new Promise<never>(() => {}));
    await Promise.race([sleep(warmupMs), failed]);
    await window.begin();
    await Promise.race([sleep(measureMs), failed]);
    await window.end();
    await Promise.all(workers);
    return window;
  }
}

// ---------------------------------------------------------------- results

interface WorkloadResult {
  name: string;
  description: string;
  rate: { metric: string; unit: string; value: number };
  latency?: { metric: string; samples: number } & Percentiles;
  ops: number;
  seconds: number;
  serverCpuSeconds: number;
  serverSystemCpuSeconds: number;
  clientCpuSeconds: number;
  machineBusy: number;
  machineIowait: number;
  otherCpuSeconds: number;
  serverRssAfterMiB: number;
  notes?: string;
}

interface JsonRow {
  name: string;
  metric: string;
  unit: string;
  better: "higher" | "lower";
  value?: number;
  values?: Record<string, number>;
  [extra: string]: unknown;
}

function round(value: number, digits = 3): number {
  if (!Number.isFinite(value)) return value;
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

function toJsonRows(result: WorkloadResult): JsonRow[] {
  const context = {
    ops: result.ops,
    seconds: round(result.seconds),
    serverRssAfterMiB: round(result.serverRssAfterMiB, 1),
    ...(result.notes ? { notes: result.notes } : {}),
  };
  const rows: JsonRow[] = [
    { name: result.name, metric: result.rate.metric, unit: result.rate.unit, better: "higher", value: round(result.rate.value, 1), ...context },
  ];
  if (result.latency) {
    const { p50, p90, p99, max, samples } = result.latency;
    rows.push({
      name: result.name,
      metric: result.latency.metric,
      unit: "ms",
      better: "lower",
      values: { p50: round(p50), p90: round(p90), p99: round(p99), max: round(max) },
      samples,
    });
  }
  rows.push(
    {
      name: result.name,
      metric: "server CPU",
      unit: "% of one core",
      better: "lower",
      value: round((100 * result.serverCpuSeconds) / result.seconds, 1),
      cpuSeconds: round(result.serverCpuSeconds, 2),
      systemCpuSeconds: round(result.serverSystemCpuSeconds, 2),
      clockTicksPerSecond: CLK_TCK,
    },
    {
      name: result.name,
      metric: "server CPU per op",
      unit: "us",
      better: "lower",
      value: round((1e6 * result.serverCpuSeconds) / Math.max(1, result.ops), 1),
    },
    {
      name: result.name,
      metric: "client CPU",
      unit: "% of one core",
      better: "lower",
      value: round((100 * result.clientCpuSeconds) / result.seconds, 1),
    },
    {
      name: result.name,
      metric: "machine CPU busy",
      unit: "% of all cores",
      better: "lower",
      value: round(100 * result.machineBusy, 1),
      iowaitPercent: round(100 * result.machineIowait, 1),
    },
    {
      name: result.name,
      metric: "other CPU (not server, not client)",
      unit: "% of one core",
      better: "lower",
      value: round((100 * result.otherCpuSeconds) / result.seconds, 1),
    },
  );
  return rows;
}

function fmt(value: number, digits = 2): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "-";
}

function markdown(results: WorkloadResult[], memory: { idle: number; after: number; hwm: number }, setup: string[]): string {
  const lines = [
    "| Workload | Rate | p50 ms | p90 ms | p99 ms | Server CPU | Server CPU/op | Client CPU | Other CPU | Machine busy |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of results) {
    const l = r.latency;
    lines.push(
      `| ${r.description}${r.notes ? ` (${r.notes})` : ""} | ${fmt(r.rate.value, 0)} ${r.rate.unit} | ${l ? fmt(l.p50) : "-"} | ${l ? fmt(l.p90) : "-"} | ${l ? fmt(l.p99) : "-"} | ` +
        `${fmt((100 * r.serverCpuSeconds) / r.seconds, 0)}% (sys ${fmt((100 * r.serverSystemCpuSeconds) / r.seconds, 0)}%) | ${fmt((1e6 * r.serverCpuSeconds) / Math.max(1, r.ops), 0)} µs | ` +
        `${fmt((100 * r.clientCpuSeconds) / r.seconds, 0)}% | ${fmt((100 * r.otherCpuSeconds) / r.seconds, 0)}% | ${fmt(100 * r.machineBusy, 0)}% |`,
    );
  }
  lines.push(
    "",
    "| Server memory | MiB |",
    "|---|---:|",
    `| RSS idle (after start, before any request) | ${fmt(memory.idle, 1)} |`,
    `| RSS after all workloads | ${fmt(memory.after, 1)} |`,
    `| Peak RSS (VmHWM) | ${fmt(memory.hwm, 1)} |`,
    "",
    ...setup.map((line) => `- ${line}`),
    "",
  );
  return lines.join("\n");
}

function progress(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

// ---------------------------------------------------------------- workloads

interface Bench {
  pid: number;
  clients: BenchClient[];
  client(ownConnection: boolean): BenchClient;
}

async function finish(
  bench: Bench,
  window: Window,
  fields: Pick<WorkloadResult, "name" | "description" | "rate" | "latency" | "ops" | "notes">,
): Promise<WorkloadResult> {
  const result: WorkloadResult = {
    ...fields,
    seconds: window.seconds,
    serverCpuSeconds: window.serverCpu,
    serverSystemCpuSeconds: window.serverSystemCpu,
    machineBusy: window.machineBusy,
    machineIowait: window.machineIowait,
    otherCpuSeconds: window.otherCpu,
    clientCpuSeconds: window.clientCpu,
    serverRssAfterMiB: (await processMemoryMiB(bench.pid)).rss,
  };
  progress(`${result.name}: ${fmt(result.rate.value, 0)} ${result.rate.unit}` + (result.latency ? `, p50 ${fmt(result.latency.p50)} ms, p99 ${fmt(result.latency.p99)} ms` : ""));
  return result;
}

/** 1 and 2: try-once Acquire then Release, each worker on its own resource. */
async function acquireRelease(bench: Bench, options: { name: string; description: string; workers: number; ownConnections: boolean; warmupMs: number }): Promise<WorkloadResult> {
  const shared = options.ownConnections ? undefined : bench.client(false);
  const clients = Array.from({ length: options.workers }, () => shared ?? bench.client(true));
  const window = await Window.run(bench.pid, options.warmupMs, MEASURE_MS, (w) =>
    clients.map(async (client, i) => {
      const resource = `${options.name}-${i}`;
      while (w.running) {
        const started = performance.now();
        const lease = await client.acquire(resource, `bench-${i}`, false);
        await client.release(lease.leaseId);
        w.record(performance.now() - started);
      }
    }),
  );
  const ops = window.latencies.length;
  return finish(bench, window, {
    name: options.name,
    description: options.description,
    rate: { metric: "acquire+release cycles", unit: "cycles/s", value: ops / window.seconds },
    latency: { metric: "cycle latency", samples: ops, ...percentiles(window.latencies) },
    ops,
  });
}

/**
 * 3: N contenders on one resource, each looping waiting-Acquire then Release.
 * Handoff latency of grant k: the next holder's Acquire response (token k)
 * minus the moment the previous holder sent its Release (token k-1). Measured
 * from the request, not the response: the service answers the Release and
 * grants the next waiter within the same millisecond, so the two responses
 * race on the network. Tokens are consecutive within one service instance.
 */
async function handoff(bench: Bench, contenders: number): Promise<WorkloadResult> {
  const name = `handoff-${contenders}`;
  const resource = `bench-handoff-${contenders}`;
  const clients = Array.from({ length: contenders }, () => bench.client(true));
  const granted = new Map<number, number>();
  const releaseSent = new Map<number, number>();
  const released = new Map<number, number>();
  const window = await Window.run(bench.pid, WARMUP_MS, MEASURE_MS, (w) =>
    clients.map(async (client, i) => {
      while (w.running) {
        const lease = await client.acquire(resource, `bench-contender-${i}`, true);
        granted.set(lease.fencingToken, performance.now());
        releaseSent.set(lease.fencingToken, performance.now());
        await client.release(lease.leaseId);
        released.set(lease.fencingToken, performance.now());
      }
    }),
  );
  const latencies: number[] = [];
  let negative = 0;
  for (const [token, at] of granted) {
    const sent = releaseSent.get(token - 1);
    if (sent === undefined || at < window.startedAt || at >= window.endedAt) continue;
    latencies.push(at - sent);
    if (at < (released.get(token - 1) ?? Infinity)) negative++;
  }
  return finish(bench, window, {
    name,
    description: `Handoff, ${contenders} contenders on 1 resource (own connection each)`,
    rate: { metric: "handoffs", unit: "handoffs/s", value: latencies.length / window.seconds },
    latency: { metric: "handoff latency (Release sent to next Acquire response)", samples: latencies.length, ...percentiles(latencies) },
    ops: latencies.length,
    ...(negative > 0 ? { notes: `in ${negative} of ${latencies.length} handoffs the next grant arrived before the Release response` } : {}),
  });
}

/** 4a: renewals of one lease on one stream, one at a time. */
async function keepAliveSequential(bench: Bench): Promise<WorkloadResult> {
  const client = bench.client(true);
  const lease = await client.acquire("bench-keepalive-one", "bench", false);
  const stream = client.keepAlive();
  try {
    const renew = async () => {
      const response = await stream.renew(lease.leaseId);
      if (response.expired) throw new Error("KeepAlive answered expired for a live lease");
    };
    for (let i = 0; i < KEEPALIVE_WARMUP; i++) await renew();
    const window = new Window(bench.pid);
    await window.begin();
    for (let i = 0; i < KEEPALIVE_SEQUENTIAL; i++) {
      const started = performance.now();
      await renew();
      window.record(performance.now() - started);
    }
    await window.end();
    const ops = window.latencies.length;
    return await finish(bench, window, {
      name: "keepalive-sequential",
      description: `KeepAlive, ${KEEPALIVE_SEQUENTIAL} sequential renewals of 1 lease on 1 stream`,
      rate: { metric: "renewals", unit: "renewals/s", value: ops / window.seconds },
      latency: { metric: "renewal round trip", samples: ops, ...percentiles(window.latencies) },
      ops,
    });
  } finally {
    stream.end();
    await stream.ended;
    await client.release(lease.leaseId);
  }
}

/** 4b: 100 leases renewed in closed loops over one shared stream. */
async function keepAliveConcurrent(bench: Bench, leases: number): Promise<WorkloadResult> {
  const client = bench.client(true);
  const held = await Promise.all(Array.from({ length: leases }, (_, i) => client.acquire(`bench-keepalive-many-${i}`, "bench", false)));
  const stream = client.keepAlive();
  try {
    const window = await Window.run(bench.pid, WARMUP_MS, MEASURE_MS, (w) =>
      held.map(async (lease) => {
        while (w.running) {
          const started = performance.now();
          const response = await stream.renew(lease.leaseId);
          if (response.expired) throw new Error("KeepAlive answered expired for a live lease");
          w.record(performance.now() - started);
        }
      }),
    );
    const ops = window.latencies.length;
    return await finish(bench, window, {
      name: `keepalive-concurrent-${leases}`,
      description: `KeepAlive, ${leases} leases renewed concurrently on 1 stream`,
      rate: { metric: "renewals", unit: "renewals/s", value: ops / window.seconds },
      latency: { metric: "renewal round trip", samples: ops, ...percentiles(window.latencies) },
      ops,
    });
  } finally {
    stream.end();
    await stream.ended;
    await Promise.all(held.map((lease) => client.release(lease.leaseId)));
  }
}

// ---------------------------------------------------------------- main

/** The file system type holding `path`, from the longest matching mount point. */
async function fileSystemOf(path: string): Promise<string> {
  try {
    const mounts = (await readFile("/proc/mounts", "utf8")).split("\n").map((line) => line.split(" "));
    let best: string[] | undefined;
    for (const mount of mounts) {
      const point = mount[1];
      if (point === undefined || !(path === point || path.startsWith(point.endsWith("/") ? point : point + "/"))) continue;
      if (!best || point.length > best[1]!.length) best = mount;
    }
    return best ? `${best[2]} on ${best[1]} (${best[0]})` : "unknown";
  } catch {
    return "unknown";
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  const dir = await makeTempDir("mcp-lockd-bench-");
  let service: ServiceProcess | undefined;
  const clients: BenchClient[] = [];
  try {
    service = await startServiceProcess({ lockDir: dir.path });
    const pid = service.child.pid;
    if (pid === undefined) throw new Error("the service has no pid");
    const running = service;
    const bench: Bench = {
      pid,
      clients,
      client(ownConnection) {
        const client = new BenchClient(running.grpcAddress, ownConnection);
        clients.push(client);
        return client;
      },
    };
    progress(`service pid ${pid} at ${service.grpcAddress}, lock dir ${dir.path}, ${QUICK ? "quick" : "full"} mode`);
    await sleep(500); // let start-up work settle before reading the idle RSS
    const idle = await processMemoryMiB(pid);

    const results: WorkloadResult[] = [];
    results.push(
      await acquireRelease(bench, {
        name: "acquire-release-1",
        description: "Acquire+Release, 1 client, sequential",
        workers: 1,
        ownConnections: true,
        warmupMs: FIRST_WARMUP_MS,
      }),
    );
    results.push(
      await acquireRelease(bench, {
        name: "acquire-release-64-own-connections",
        description: "Acquire+Release, 64 clients on 64 resources, own connection each",
        workers: 64,
        ownConnections: true,
        warmupMs: WARMUP_MS,
      }),
    );
    results.push(
      await acquireRelease(bench, {
        name: "acquire-release-64-shared-channel",
        description: "Acquire+Release, 64 clients on 64 resources, 1 shared channel",
        workers: 64,
        ownConnections: false,
        warmupMs: WARMUP_MS,
      }),
    );
    results.push(await handoff(bench, 2));
    results.push(await handoff(bench, 16));
    results.push(await keepAliveSequential(bench));
    results.push(await keepAliveConcurrent(bench, 100));

    for (const client of clients.splice(0)) client.close();
    await sleep(500);
    const after = await processMemoryMiB(pid);
    const lockDirFs = await fileSystemOf(dir.path);
    const cpuList = cpus();
    const machine = {
      cpus: cpuList.length,
      model: cpuList[0]?.model ?? "unknown",
      node: process.version,
      platform: `${platform()} ${release()} ${arch()}`,
      date: new Date().toISOString(),
      lockDirFileSystem: lockDirFs,
    };
    const setup = [
      `${machine.cpus} × ${machine.model}, Node ${machine.node}, ${machine.platform}, ${machine.date}`,
      `Lock dir on ${lockDirFs}; client and server share the machine's CPUs.`,
      `${QUICK ? "Quick" : "Full"} mode: ${MEASURE_MS / 1000} s measured per timed workload after ${WARMUP_MS / 1000} s warm-up (first workload ${FIRST_WARMUP_MS / 1000} s); lease ttl ${TTL.seconds} s, wait_timeout ${WAIT.seconds} s.`,
      "CPU columns are percent of one core during the measured window (server: utime+stime from /proc, sys = stime part; client: this process); server CPU/op is server CPU time divided by operations; other CPU is busy time on the machine outside the server and the client (other processes, kernel threads such as the ext4 journal); machine busy is all cores' non-idle, non-iowait share from /proc/stat (100% = every core busy).",
    ];
    const loaded = results.filter((r) => r.otherCpuSeconds / r.seconds > 0.25).map((r) => r.name);
    if (loaded.length > 0) {
      setup.push(`WARNING: other processes used more than 25% of a core during ${loaded.join(", ")}; those figures are not representative.`);
    }
    process.stdout.write(markdown(results, { idle: idle.rss, after: after.rss, hwm: after.hwm }, setup));

    const memoryRows: JsonRow[] = [
      { name: "server", metric: "RSS idle", unit: "MiB", better: "lower", value: round(idle.rss, 1) },
      { name: "server", metric: "RSS after runs", unit: "MiB", better: "lower", value: round(after.rss, 1) },
      { name: "server", metric: "peak RSS (VmHWM)", unit: "MiB", better: "lower", value: round(after.hwm, 1) },
    ];
    const json = {
      machine,
      mode: QUICK ? "quick" : "full",
      totalSeconds: round((performance.now() - started) / 1000, 1),
      warnings: loaded.length > 0 ? [`other load during: ${loaded.join(", ")}`] : [],
      workloads: [...results.flatMap(toJsonRows), ...memoryRows],
    };
    await mkdir(dirname(RESULTS_FILE), { recursive: true });
    await writeFile(RESULTS_FILE, JSON.stringify(json, null, 2) + "\n");
    progress(`wrote ${RESULTS_FILE} in ${json.totalSeconds} s`);
  } finally {
    for (const client of clients) client.close();
    if (service) {
      const code = await service.stop();
      if (code !== 0) progress(`service exited with ${code}:\n${service.stderr()}`);
    }
    await dir.remove();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
