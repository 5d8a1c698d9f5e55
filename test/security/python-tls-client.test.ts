// Debian's Python grpcio, through the mcp_lockd package, against a service
// with mutual TLS and --auth-file: a bearer token over TLS, the client
// certificate's common name, and AccessDeniedError outside the grants.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { startServiceProcess } from "../helpers/service-process.ts";
import { runProcess } from "../helpers/run-process.ts";
import { PYTHON } from "../helpers/python.ts";
import { PYTHON_PACKAGE_DIR } from "../clients/python-lease-driver.ts";
import { TestCertificateAuthority } from "../helpers/test-certificates.ts";

const SCRIPT = `
import json, sys
sys.path.insert(0, sys.argv[1])
from mcp_lockd import AccessDeniedError, LockClient
address, ca_file, cert_file, key_file, token = sys.argv[2:7]
read = lambda path: open(path, "rb").read()
tls = {"ca": read(ca_file), "cert": read(cert_file), "key": read(key_file)}
out = {}
with LockClient(address, tls=tls, token=token) as client:
    with client.lock("ci-py", ttl=5) as lease:
        out["token"] = lease.fencing_token
        out["listed"] = [info.resource for info in client.list()]
    try:
        client.acquire("prod", ttl=5)
    except AccessDeniedError as err:
        out["denied"] = [err.code, str(err)]
# No token: the certificate's common name is the principal (read only).
with LockClient(address, tls=tls) as by_cert:
    out["by_cert_listed"] = [info.resource for info in by_cert.list()]
    try:
        by_cert.acquire("ci-py", ttl=5)
    except AccessDeniedError as err:
        out["by_cert_denied"] = [err.code, str(err)]
print(json.dumps(out))
`;

test("python LockClient with mutual TLS and a bearer token", async () => {
  const temp = await makeTempDir();
  try {
    const ca = await TestCertificateAuthority.create(temp.path);
    const [server, client] = await Promise.all([ca.server(), ca.client("py-runner")]);
    const token = randomBytes(24).toString("base64url");
    const authFile = join(temp.path, "auth.json");
    await writeFile(
      authFile,
      JSON.stringify({
        principals: [
          { name: "py-ci", token_sha256: createHash("sha256").update(token).digest("hex"), grants: [{ resource_prefix: "ci-", actions: ["lock", "read"] }] },
          { name: "py-reader", cert_common_name: "py-runner", grants: [{ resource_prefix: "", actions: ["read"] }] },
        ],
      }),
    );
    const service = await startServiceProcess({
      lockDir: join(temp.path, "locks"),
      extraArgs: ["--cert-file", server.certFile, "--key-file", server.keyFile, "--trusted-ca-file", ca.certFile, "--client-cert-auth", "--auth-file", authFile],
    });
    try {
      const result = await runProcess(PYTHON, ["-c", SCRIPT, PYTHON_PACKAGE_DIR, service.grpcAddress, ca.certFile, client.certFile, client.keyFile, token]);
      assert.equal(result.code, 0, result.stderr);
      const out = JSON.parse(result.stdout) as Record<string, unknown>;
      assert.ok((out.token as number) > 0);
      assert.deepEqual(out.listed, ["ci-py"]);
      assert.equal((out.denied as string[])[0], "PERMISSION_DENIED");
      assert.match((out.denied as string[])[1]!, /"py-ci" may not lock on resource "prod"/);
      assert.deepEqual(out.by_cert_listed, []);
      assert.match((out.by_cert_denied as string[])[1]!, /"py-reader" may not lock/);
    } finally {
      await service.stop();
    }
  } finally {
    await temp.remove();
  }
});
