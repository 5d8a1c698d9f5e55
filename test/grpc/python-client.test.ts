// A real foreign client: Python grpcio with stubs generated at test time from
// proto/mcplockd/v1/lock.proto, against the service as a child process.

import { test } from "node:test";
import assert from "node:assert/strict";
import { access, mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { startServiceProcess } from "../helpers/service-process.ts";
import { assertValidLockDir } from "../helpers/lease-file-schema.ts";
import { runProcess, type ProcessResult } from "../helpers/run-process.ts";
import { INSTALL_HINT, PYTHON } from "../helpers/python.ts";

// dist/test/grpc/*.js → the repository root (proto/ and test/grpc/python_client.py are not in dist).
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const CLIENT_PY = join(ROOT, "test", "grpc", "python_client.py");

const describe = (r: ProcessResult) => `exit ${r.signal ?? r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

/** grpcio and grpc_tools must be importable by /usr/bin/python3: a missing one fails the test, it never skips. */
async function grpcToolsIncludeDir(): Promise<string> {
  await access(PYTHON).catch(() => assert.fail(`${PYTHON} is missing; install python3 and then: ${INSTALL_HINT}`));
  const probe = await runProcess(PYTHON, [
    "-c",
    "import os, grpc, grpc_tools.protoc; print(os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'))",
  ]);
  assert.equal(probe.code, 0, `${PYTHON} cannot import grpc / grpc_tools; run: ${INSTALL_HINT}\n${describe(probe)}`);
  return probe.stdout.trim();
}

/** Generates lock_pb2.py and lock_pb2_grpc.py into `outDir` (as mcplockd/v1/...). */
async function generateStubs(outDir: string): Promise<void> {
  await mkdir(outDir, { recursive: true }); // protoc does not create its output dir
  const includes = ["-I", "proto"];
  // Debian ships the well-known protos in /usr/include only with libprotobuf-dev; grpc_tools has its own copy.
  const systemWellKnown = await access("/usr/include/google/protobuf/duration.proto").then(
    () => true,
    () => false,
  );
  if (systemWellKnown) includes.push("-I", "/usr/include");
  includes.push("-I", await grpcToolsIncludeDir());
  const protoc = await runProcess(
    PYTHON,
    ["-m", "grpc_tools.protoc", ...includes, `--python_out=${outDir}`, `--grpc_python_out=${outDir}`, "proto/mcplockd/v1/lock.proto"],
    { cwd: ROOT },
  );
  assert.equal(protoc.code, 0, `grpc_tools.protoc failed:\n${describe(protoc)}`);
  const generated = (await readdir(join(outDir, "mcplockd", "v1"))).sort();
  assert.deepEqual(generated, ["lock_pb2.py", "lock_pb2_grpc.py"]);
}

interface Status {
  code: string;
  details: string;
  error_code: string | null;
}

interface Summary {
  acquire: {
    lease_id_length: number;
    resource: string;
    holder: string;
    fencing_token: number;
    acquired_at: number;
    expires_at: number;
    ttl_seconds: number;
    metadata: Record<string, string>;
    state: string;
  };
  keepalive: Array<{ lease_id_matches: boolean; expired: boolean; expires_at: number; ttl_seconds: number }>;
  keepalive_extra_responses: number;
  list: Array<{ resource: string; holder: string; lease_id: string; fencing_token: number; expires_at: number; state: string; waiters: number }>;
  busy: Status;
  release: { released: boolean };
  release_again: Status;
  keepalive_after_release: Array<{ expired: boolean; has_expires_at: boolean }>;
  invalid_resource: Status;
  invalid_ttl: Status;
}

test("a python grpcio client with generated stubs: acquire, keepalive, list, busy, release, errors", async () => {
  await grpcToolsIncludeDir(); // fails (never skips) with the install hint, before starting anything
  const dir = await makeTempDir();
  const lockDir = join(dir.path, "locks");
  const stubs = join(dir.path, "stubs");
  const service = await startServiceProcess({ lockDir });
  try {
    await generateStubs(stubs);
    const started = Date.now();
    const result = await runProcess(PYTHON, [CLIENT_PY, stubs, service.grpcAddress], { timeoutMs: 60_000 });
    assert.equal(result.code, 0, `python_client.py failed:\n${describe(result)}\nservice stderr:\n${service.stderr()}`);
    const s = JSON.parse(result.stdout) as Summary;

    // Acquire
    assert.ok(s.acquire.lease_id_length >= 22, `lease id of ${s.acquire.lease_id_length} characters`);
    assert.equal(s.acquire.resource, "py-grpc");
    assert.equal(s.acquire.holder, "python-client");
    assert.equal(s.acquire.fencing_token, 1);
    assert.equal(s.acquire.ttl_seconds, 5);
    assert.deepEqual(s.acquire.metadata, { lang: "python" });
    assert.equal(s.acquire.state, "held");
    assert.ok(s.acquire.acquired_at >= started - 1_000 && s.acquire.acquired_at <= Date.now());
    assert.equal(s.acquire.expires_at - s.acquire.acquired_at, 5_000);

    // KeepAlive: two answers on one stream, each live, expires_at moving forward; nothing extra.
    assert.equal(s.keepalive.length, 2);
    for (const r of s.keepalive) {
      assert.deepEqual([r.lease_id_matches, r.expired, r.ttl_seconds], [true, false, 5]);
    }
    assert.ok(s.keepalive[0]!.expires_at > s.acquire.expires_at, JSON.stringify(s.keepalive));
    assert.ok(s.keepalive[1]!.expires_at > s.keepalive[0]!.expires_at, JSON.stringify(s.keepalive));
    assert.equal(s.keepalive_extra_responses, 0);

    // ListLocks: the renewed lease, never its id.
    assert.equal(s.list.length, 1);
    assert.deepEqual(
      { ...s.list[0], expires_at: undefined },
      { resource: "py-grpc", holder: "python-client", lease_id: "", fencing_token: 1, expires_at: undefined, state: "held", waiters: 0 },
    );
    assert.equal(s.list[0]!.expires_at, s.keepalive[1]!.expires_at);

    // Busy → ABORTED naming the holder.
    assert.equal(s.busy.code, "ABORTED", JSON.stringify(s.busy));
    assert.match(s.busy.details, /"python-client"/);
    assert.equal(s.busy.error_code, "RESOURCE_BUSY");

    // Release, then release again → NOT_FOUND; KeepAlive answers expired in-band and stays open.
    assert.deepEqual(s.release, { released: true });
    assert.equal(s.release_again.code, "NOT_FOUND", JSON.stringify(s.release_again));
    assert.deepEqual(s.keepalive_after_release, [
      { expired: true, has_expires_at: false },
      { expired: true, has_expires_at: false },
    ]);

    // Invalid arguments name the field.
    assert.equal(s.invalid_resource.code, "INVALID_ARGUMENT", JSON.stringify(s.invalid_resource));
    assert.match(s.invalid_resource.details, /resource/);
    assert.equal(s.invalid_ttl.code, "INVALID_ARGUMENT", JSON.stringify(s.invalid_ttl));
    assert.match(s.invalid_ttl.details, /ttl/);

    // Nothing left held.
    assert.equal(await assertValidLockDir(lockDir), 0);
  } finally {
    await service.stop();
    await dir.remove();
  }
});
