// `mcp-lockd serve --store etcd` wired to a real etcd that requires TLS and
// a client certificate (Debian's etcd-server, a throwaway CA): the TLS files
// are read at start and used, --etcd-token-floor holds, metrics and the
// serving line name the store; without the client certificate etcd refuses
// the connection and lock calls fail UNAVAILABLE; a TLS file that cannot be
// read fails the start, naming it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { startEtcdCluster, type EtcdCluster } from "../helpers/etcd-cluster.ts";
import { fetchHealthLocks } from "../helpers/health-locks.ts";
import { healthCheck } from "../helpers/introspection-client.ts";
import { expectGrpcError, TestLockClient } from "../helpers/lock-client.ts";
import { runProcess } from "../helpers/run-process.ts";
import { cliCommand, startServiceProcess, testRuntime, type ServiceProcess } from "../helpers/service-process.ts";

const TTL = { seconds: 10, nanos: 0 };
const FLOOR = 1_000_000;

describe("serve --store etcd with TLS to etcd", () => {
  let cluster: EtcdCluster;
  const services: ServiceProcess[] = [];
  const clients: TestLockClient[] = [];

  before(async () => {
    cluster = await startEtcdCluster(1, { tls: true });
  });

  after(async () => {
    for (const client of clients) client.close();
    await Promise.all(services.map((service) => service.stop("SIGKILL")));
    await cluster?.close();
  });

  /**
   * etcd's URLs. Under Deno by host name: its TLS refuses an IP address as
   * the server name, which grpc-js sends (docs/etcd.md).
   */
  function endpoints(): string {
    const urls = cluster.clientUrls.join(",");
    return testRuntime() === "deno" ? urls.replaceAll("127.0.0.1", "localhost") : urls;
  }

  /** The flags of a deployment on the TLS etcd under `prefix`; `withClientCertificate` false leaves the certificate out. */
  function etcdArgs(prefix: string, withClientCertificate = true): string[] {
    const { ca, client } = cluster.certificates!;
    return [
      "--store", "etcd",
      "--etcd-endpoints", endpoints(),
      "--etcd-prefix", prefix,
      "--etcd-cacert", ca.certFile,
      ...(withClientCertificate ? ["--etcd-cert", client.certFile, "--etcd-key", client.keyFile] : []),
    ];
  }

  async function serve(extraArgs: string[]): Promise<{ service: ServiceProcess; client: TestLockClient }> {
    const service = await startServiceProcess({ extraArgs });
    services.push(service);
    const client = new TestLockClient(service.grpcAddress);
    clients.push(client);
    return { service, client };
  }

  test("with the CA and a client certificate it serves; tokens start above --etcd-token-floor; metrics and the log name the etcd store", async () => {
    const { service, client } = await serve([...etcdArgs("/tls-ok/"), "--etcd-token-floor", String(FLOOR)]);
    const { lease } = await client.acquire({ resource: "over-tls", holder: "tls-holder", ttl: TTL });
    assert.ok(lease);
    assert.ok(lease.fencingToken > FLOOR, `token ${lease.fencingToken} is not above the floor ${FLOOR}`);
    assert.deepEqual(
      (await fetchHealthLocks(service)).map((e) => [e.resource, e.holder, e.fencing_token]),
      [["over-tls", "tls-holder", lease.fencingToken]],
    );
    const metrics = await (await fetch(`http://${service.httpAddress}/metrics`)).text();
    assert.match(metrics, /^mcplockd_build_info\{[^}]*store="etcd"[^}]*\} 1$/m);
    assert.match(metrics, /^mcplockd_store_up 1$/m);
    assert.equal(await healthCheck(service.grpcAddress, ""), "SERVING");
    assert.deepEqual(await client.release(lease.leaseId), { released: true });
    const next = (await client.acquire({ resource: "over-tls", holder: "tls-holder", ttl: TTL })).lease!;
    assert.ok(next.fencingToken > lease.fencingToken);
    await client.release(next.leaseId);
    // The lock dir plays no part: the log names the store instead.
    assert.doesNotMatch(service.stderr(), /lease file/);
    assert.match(service.stderr(), /loading leases from etcd https:\/\/(127\.0\.0\.1|localhost):\d+ prefix \/tls-ok\//);
  });

  test("without the client certificate etcd refuses the connection: lock calls UNAVAILABLE, health NOT_SERVING, nothing granted", async () => {
    const { service, client } = await serve(etcdArgs("/tls-no-cert/", false));
    await expectGrpcError(client.acquire({ resource: "refused", holder: "h", ttl: TTL }, { deadlineMs: 15_000 }), status.UNAVAILABLE);
    assert.equal(await healthCheck(service.grpcAddress, ""), "NOT_SERVING");
    assert.equal(service.child.exitCode, null, "the service keeps running (and retrying)");
  });

  test("a TLS file that cannot be read fails the start (exit 1), naming it", async () => {
    const missing = join(cluster.members[0]!.dataDir, "no-such-ca.pem");
    const { command, args } = cliCommand(["serve", ...etcdArgs("/tls-missing/").map((arg) => (arg === cluster.certificates!.ca.certFile ? missing : arg)), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
    const { code, stderr, stdout } = await runProcess(command, args, { timeoutMs: 20_000 });
    assert.equal(code, 1, `exit ${code}: ${stderr}`);
    assert.ok(stderr.includes(missing), `the message names ${missing}: ${stderr}`);
    assert.match(stderr, /--etcd-cacert/);
    assert.doesNotMatch(stdout, /mcp-lockd serving/);
  });
});
