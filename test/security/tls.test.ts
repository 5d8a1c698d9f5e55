// TLS and mutual TLS against the real service as a child process, with
// certificates made by openssl in the test: who gets in, who does not, a
// minimum TLS version, certificates rotated (file change and SIGHUP) under a
// live KeepAlive stream, and plaintext refused beyond loopback.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { request } from "node:https";
import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { connect } from "node:tls";
import { LockClient, UnavailableError } from "../../src/client/index.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { startServiceProcess, type ServiceProcess } from "../helpers/service-process.ts";
import { TestCertificateAuthority, type CertificateFiles } from "../helpers/test-certificates.ts";
import { runProcess } from "../helpers/run-process.ts";
import { runClientCli } from "../cli/client-cli.ts";
import { cliCommand } from "../helpers/service-process.ts";
import { waitFor } from "../helpers/wait.ts";

/** GET over HTTPS; resolves to the status and body, rejects when the handshake fails. */
function httpsGet(address: string, path: string, tls: { ca: Buffer; cert?: Buffer; key?: Buffer }, headers: Record<string, string> = {}) {
  const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host, port, path, ...tls, headers, servername: "localhost" }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** Whether a TLS handshake with at most `maxVersion` succeeds. */
async function handshakes(address: string, ca: Buffer, client: CertificateFiles, maxVersion: "TLSv1.2" | "TLSv1.3"): Promise<boolean> {
  const port = Number(address.slice(address.lastIndexOf(":") + 1));
  const socket = connect({ host: "127.0.0.1", port, ca, cert: client.cert, key: client.key, maxVersion, servername: "localhost", ALPNProtocols: ["h2"] });
  try {
    await once(socket, "secureConnect");
    return true;
  } catch {
    return false;
  } finally {
    socket.destroy();
  }
}

describe("TLS and mutual TLS", () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let ca: TestCertificateAuthority;
  let otherCa: TestCertificateAuthority;
  let server: CertificateFiles;
  let client: CertificateFiles;
  let strangerClient: CertificateFiles;
  let service: ServiceProcess;
  let certDir: string;

  before(async () => {
    temp = await makeTempDir();
    [ca, otherCa] = await Promise.all([TestCertificateAuthority.create(temp.path, "ca"), TestCertificateAuthority.create(temp.path, "other-ca")]);
    [server, client, strangerClient] = await Promise.all([ca.server(), ca.client("ci-runner"), otherCa.client("ci-runner")]);
    // The service's own files, replaced by rename in the reload test.
    certDir = join(temp.path, "served");
    await runProcess("mkdir", [certDir]);
    await Promise.all([writeFile(join(certDir, "cert.pem"), server.cert), writeFile(join(certDir, "key.pem"), server.key)]);
    service = await startServiceProcess({
      lockDir: join(temp.path, "locks"),
      extraArgs: [
        "--cert-file", join(certDir, "cert.pem"), "--key-file", join(certDir, "key.pem"),
        "--trusted-ca-file", ca.certFile, "--client-cert-auth", "--tls-min-version", "1.3",
      ],
    });
  });

  after(async () => {
    await service?.stop();
    await temp?.remove();
  });

  const tlsClient = (trust: Buffer, cert: CertificateFiles | null = client) =>
    new LockClient({ address: service.grpcAddress, tls: { ca: trust, ...(cert ? { cert: cert.cert, key: cert.key } : {}) } });

  test("a client with the CA and a client certificate locks, lists and releases; HTTPS serves it too", async () => {
    await using locks = tlsClient(ca.cert);
    {
      await using lock = await locks.acquire("tls-1", { ttl: 5_000 });
      assert.equal(lock.fencingToken > 0n, true);
      assert.deepEqual((await locks.list()).map((info) => info.resource), ["tls-1"]);
      const health = await httpsGet(service.httpAddress, "/health/locks", { ca: ca.cert, cert: client.cert, key: client.key });
      assert.equal(health.status, 200);
      assert.deepEqual((JSON.parse(health.body) as { locks: Array<{ resource: string }> }).locks.map((l) => l.resource), ["tls-1"]);
    }
    assert.deepEqual(await locks.list(), []);
    // The CLI, `call` (reflection) included, with the same files.
    const tlsFlags = ["--cacert", ca.certFile, "--cert", client.certFile, "--key", client.keyFile];
    const status = await runClientCli(["status", ...tlsFlags], { address: service.grpcAddress });
    assert.equal(status.code, 0, status.stderr);
    assert.equal(status.stderr, "", "no warning on stderr");
    const call = await runClientCli(["call", ...tlsFlags, "grpc.health.v1.Health/Check", "{}"], { address: service.grpcAddress });
    assert.equal(call.code, 0, call.stderr);
    assert.match(call.stdout, /SERVING/);
    const refused = await runClientCli(["status", "--cacert", ca.certFile], { address: service.grpcAddress });
    assert.equal(refused.code, 69, "no client certificate: the handshake fails");
  });

  test("refused: plaintext, no client certificate, a certificate of another CA, a server not trusted, TLS 1.2", async () => {
    const refusals: Array<[string, LockClient]> = [
      ["plaintext", new LockClient({ address: service.grpcAddress })],
      ["no client certificate", tlsClient(ca.cert, null)],
      ["a client certificate of another CA", tlsClient(ca.cert, strangerClient)],
      ["a client that does not trust the server's CA", tlsClient(otherCa.cert)],
    ];
    for (const [label, refused] of refusals) {
      await assert.rejects(refused.list(), UnavailableError, label);
      refused.close();
    }
    await assert.rejects(httpsGet(service.httpAddress, "/healthz", { ca: ca.cert }), "HTTPS without a client certificate");
    assert.equal(await handshakes(service.grpcAddress, ca.cert, client, "TLSv1.3"), true, "TLS 1.3 handshakes");
    assert.equal(await handshakes(service.grpcAddress, ca.cert, client, "TLSv1.2"), false, "--tls-min-version 1.3 refuses TLS 1.2");
  });

  test("rotated certificates are served to new connections; a live KeepAlive stream carries on", async () => {
    await using holder = tlsClient(ca.cert);
    await using lock = await holder.acquire("rotated", { ttl: 2_000 });
    // The same CN, signed by the other CA: a client trusting only the old CA
    // can tell which certificate it is shown.
    const rotated = await otherCa.server("rotated-server");
    const reloads = () => service.stderr().split("TLS certificates reloaded").length - 1;
    const before = reloads();
    await writeFile(join(certDir, "key.pem.new"), rotated.key);
    await writeFile(join(certDir, "cert.pem.new"), rotated.cert);
    await rename(join(certDir, "key.pem.new"), join(certDir, "key.pem"));
    await rename(join(certDir, "cert.pem.new"), join(certDir, "cert.pem"));
    await waitFor(() => reloads() > before, "the service to reload its certificates");

    const trustsNew = tlsClient(otherCa.cert);
    assert.deepEqual((await trustsNew.list()).map((info) => info.resource), ["rotated"]);
    trustsNew.close();
    const trustsOld = tlsClient(ca.cert);
    await assert.rejects(trustsOld.list(), UnavailableError, "new connections get the new certificate");
    trustsOld.close();

    // Renewed on the connection made before the rotation, for longer than its ttl.
    const renewed = await holder.renew(lock.leaseId);
    assert.ok(renewed.expiresAt.getTime() > Date.now());
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    assert.equal(lock.signal.aborted, false, "the lease kept over the old connection was never lost");

    // SIGHUP re-reads too (the files are as they were: a reload of the same).
    const beforeHup = reloads();
    service.child.kill("SIGHUP");
    await waitFor(() => reloads() > beforeHup, "a reload on SIGHUP");
    assert.match(service.stderr(), /SIGHUP: re-reading/);
  });

  test("a broken certificate file keeps the last good one, and says why", async () => {
    const failures = () => service.stderr().split("TLS certificates not reloaded").length - 1;
    const before = failures();
    await writeFile(join(certDir, "cert.pem.new"), "not a certificate\n");
    await rename(join(certDir, "cert.pem.new"), join(certDir, "cert.pem"));
    await waitFor(() => failures() > before, "the failed reload to be logged");
    const stillServes = tlsClient(otherCa.cert);
    assert.deepEqual(await stillServes.list(), []);
    stillServes.close();
  });
});

describe("plaintext beyond loopback", () => {
  test("is refused at start with a clear message, unless --insecure-listen", async () => {
    const temp = await makeTempDir();
    try {
      const { command, args } = cliCommand(["serve", "--lock-dir", temp.path, "--grpc-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0"]);
      const refused = await runProcess(command, args, { timeoutMs: 15_000 });
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /--grpc-listen 0\.0\.0\.0:0 is not a loopback address and TLS is off/);
      assert.match(refused.stderr, /--insecure-listen/);

      const service = await startServiceProcess({ lockDir: temp.path, grpcListen: "0.0.0.0:0", extraArgs: ["--insecure-listen"] });
      try {
        const port = service.grpcAddress.slice(service.grpcAddress.lastIndexOf(":") + 1);
        const client = new LockClient({ address: `127.0.0.1:${port}` });
        assert.deepEqual(await client.list(), []);
        client.close();
      } finally {
        await service.stop();
      }
    } finally {
      await temp.remove();
    }
  });
});

