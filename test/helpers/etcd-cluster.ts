import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { join } from "node:path";
import { EtcdClient } from "../../src/store/etcd/etcd-client.ts";
import { TestCertificateAuthority, type CertificateFiles } from "./test-certificates.ts";
import { makeTempDir } from "./temp-dir.ts";
import { waitFor } from "./wait.ts";

// A real etcd (Debian's etcd-server 3.4, /usr/bin/etcd; .ci/run installs it)
// for tests: one member or a cluster of three on loopback, each with a temp
// data dir and free ports, quick elections (--election-timeout 500
// --heartbeat-interval 50). Members can be SIGKILLed, SIGSTOPped, resumed
// and restarted on their data dir; the leader is found by asking each
// member's Maintenance/Status.

export const ETCD_PATH = process.env.MCP_LOCKD_TEST_ETCD ?? "/usr/bin/etcd";

export interface EtcdMember {
  readonly name: string;
  /** "127.0.0.1:PORT": gRPC clients connect here. */
  readonly endpoint: string;
  /** "http://127.0.0.1:PORT". */
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  /** The running process, or undefined once it was killed or stopped. */
  readonly child: ChildProcess | undefined;
  /** Everything it logged (stderr), across restarts. */
  log(): string;
  /** Sends `signal` (default SIGKILL) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP: the process stays, answering nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Starts it again on its data dir and ports (after kill), and waits until it serves. */
  restart(): Promise<void>;
}

/** A throwaway CA, etcd's server certificate and a client certificate it accepts. */
export interface EtcdCertificates {
  ca: TestCertificateAuthority;
  server: CertificateFiles;
  client: CertificateFiles;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Every member's "http://127.0.0.1:PORT" (https:// with `tls`), as --etcd-endpoints takes them. */
  readonly clientUrls: string[];
  /** With `tls`: the CA, and a client certificate etcd requires (--client-cert-auth). */
  readonly certificates: EtcdCertificates | undefined;
  /** The member the others follow, once there is one (waits up to `timeoutMs`). */
  leader(timeoutMs?: number): Promise<EtcdMember>;
  /** Kills every member (SIGKILL; stopped ones are resumed first) and removes the data dirs; safe to call twice. */
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The environment without ETCD_* variables, so only the command line configures etcd. */
function etcdEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("ETCD")));
}

class Member implements EtcdMember {
  child: ChildProcess | undefined;
  #log = "";
  #paused = false;

  constructor(
    readonly name: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly dataDir: string,
    private readonly initialCluster: string,
    private readonly clusterToken: string,
    private readonly certificates: EtcdCertificates | undefined,
  ) {}

  get endpoint(): string {
    return `127.0.0.1:${this.clientPort}`;
  }
  get clientUrl(): string {
    return `${this.certificates ? "https" : "http"}://127.0.0.1:${this.clientPort}`;
  }
  get peerUrl(): string {
    return `http://127.0.0.1:${this.peerPort}`;
  }

  log(): string {
    return this.#log;
  }

  spawn(): void {
    const args = [
      "--name", this.name,
      "--data-dir", this.dataDir,
      "--listen-client-urls", this.clientUrl,
      "--advertise-client-urls", this.clientUrl,
      "--listen-peer-urls", this.peerUrl,
      "--initial-advertise-peer-urls", this.peerUrl,
      "--initial-cluster", this.initialCluster,
      "--initial-cluster-token", this.clusterToken,
      "--initial-cluster-state", "new",
      "--election-timeout", "500",
      "--heartbeat-interval", "50",
      "--logger", "zap",
      "--log-outputs", "stderr",
      ...(this.certificates
        ? [
            "--cert-file", this.certificates.server.certFile,
            "--key-file", this.certificates.server.keyFile,
            "--trusted-ca-file", this.certificates.ca.certFile,
            "--client-cert-auth",
          ]
        : []),
    ];
    const child = spawn(ETCD_PATH, args, { stdio: ["ignore", "ignore", "pipe"], env: etcdEnv() });
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      // Keep the tail only: a long test logs a lot.
      this.#log = (this.#log + chunk).slice(-200_000);
    });
    child.on("error", (err) => (this.#log += `\ncannot run ${ETCD_PATH}: ${err.message}\n`));
    this.child = child;
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    if (this.#paused && signal !== "SIGKILL") child.kill("SIGCONT");
    child.kill(signal);
    this.#paused = false;
    await exited;
  }

  pause(): void {
    this.child?.kill("SIGSTOP");
    this.#paused = true;
  }

  resume(): void {
    this.child?.kill("SIGCONT");
    this.#paused = false;
  }

  async restart(): Promise<void> {
    if (this.child) throw new Error(`etcd member ${this.name} is still running`);
    this.spawn();
    await this.serving();
  }

  /** Until it answers Maintenance/Status (with a quorum or not). */
  async serving(timeoutMs = 20_000): Promise<void> {
    const client = new EtcdClient({ endpoints: [this.clientUrl], tls: clientTls(this.certificates) });
    try {
      await waitFor(
        async () => {
          if (!this.child || this.child.exitCode !== null) throw new Error(`etcd member ${this.name} exited:\n${this.#log.slice(-3_000)}`);
          return client.status({ timeoutMs: 1_000 }).then(() => true, () => false);
        },
        `etcd member ${this.name} to serve`,
        timeoutMs,
        50,
      );
    } finally {
      client.close();
    }
  }
}

/** The TLS options a client of the cluster needs. */
export function clientTls(certificates: EtcdCertificates | undefined) {
  return certificates && { ca: certificates.ca.cert, cert: certificates.client.cert, key: certificates.client.key };
}

/**
 * Starts `size` members (1 or 3) and waits until they serve and have a
 * leader. With `tls`, clients talk to them over TLS with a throwaway CA and
 * must present a client certificate (peers still talk plain HTTP).
 */
export async function startEtcdCluster(size: 1 | 3 = 1, options: { tls?: boolean } = {}): Promise<EtcdCluster> {
  const temp = await makeTempDir("mcp-lockd-etcd-");
  let certificates: EtcdCertificates | undefined;
  if (options.tls) {
    const ca = await TestCertificateAuthority.create(temp.path, "etcd-ca");
    certificates = { ca, server: await ca.server("etcd"), client: await ca.client("mcp-lockd") };
  }
  const ports = [];
  for (let i = 0; i < size; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const initialCluster = ports.map((p, i) => `m${i + 1}=http://127.0.0.1:${p.peer}`).join(",");
  const token = `mcp-lockd-test-${process.pid}-${Date.now()}`;
  const members = ports.map((p, i) => new Member(`m${i + 1}`, p.client, p.peer, join(temp.path, `m${i + 1}`), initialCluster, token, certificates));
  let closing: Promise<void> | undefined;
  const cluster: EtcdCluster = {
    members,
    clientUrls: members.map((m) => m.clientUrl),
    certificates,
    leader: (timeoutMs = 10_000) => findLeader(members, timeoutMs, certificates),
    close: () =>
      (closing ??= (async () => {
        for (const member of members) member.resume();
        await Promise.all(members.map((member) => member.kill("SIGKILL")));
        await temp.remove();
      })()),
  };
  try {
    for (const member of members) member.spawn();
    await Promise.all(members.map((member) => member.serving()));
    await cluster.leader(20_000);
  } catch (err) {
    await cluster.close();
    throw err;
  }
  return cluster;
}

/** The member that the running members agree leads, asking each for its status. */
async function findLeader(members: readonly Member[], timeoutMs: number, certificates: EtcdCertificates | undefined): Promise<EtcdMember> {
  let leader: EtcdMember | undefined;
  await waitFor(
    async () => {
      const running = members.filter((m) => m.child);
      const answers = await Promise.all(
        running.map(async (member) => {
          const client = new EtcdClient({ endpoints: [member.clientUrl], tls: clientTls(certificates) });
          try {
            const status = await client.status({ timeoutMs: 500 });
            return { member, id: status.header?.memberId, leader: status.leader };
          } catch {
            return undefined;
          } finally {
            client.close();
          }
        }),
      );
      const byId = answers.find((a) => a && a.leader !== 0n && answers.some((b) => b?.id === a.leader));
      if (!byId) return false;
      leader = answers.find((a) => a?.id === byId.leader)!.member;
      return true;
    },
    "an etcd leader",
    timeoutMs,
    50,
  );
  return leader!;
}
