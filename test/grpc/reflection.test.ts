// gRPC server reflection against a real service: what it lists and describes,
// from Node (the test helper, and `mcp-lockd call`, which knows the API only
// through reflection) and from Python grpcio.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { access, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Server, ServerCredentials, status } from "@grpc/grpc-js";
import { HealthService } from "../../src/gen/grpc/health/v1/health.ts";
import { LockServiceService } from "../../src/gen/mcplockd/v1/lock.ts";
import {
  describeService,
  fileByFilename,
  fileContainingSymbol,
  listServices,
  reflect,
  ReflectionError,
} from "../helpers/introspection-client.ts";
import { runProcess, type ProcessResult } from "../helpers/run-process.ts";
import { CLI_PATH, startServiceFixture, type ServiceFixture } from "../helpers/service-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { PYTHON } from "../helpers/python.ts";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const CLIENT_PY = join(ROOT, "test", "grpc", "reflection_client.py");
const LOCK_FILE = "mcplockd/v1/lock.proto";
const LOCK_IMPORTS = ["google/protobuf/duration.proto", "google/protobuf/timestamp.proto"];
const SERVICES = [
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "mcplockd.v1.LockService",
];

const show = (r: ProcessResult) => `exit ${r.signal ?? r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

let fixture: ServiceFixture;
let address: string;

before(async () => {
  fixture = await startServiceFixture();
  address = fixture.service.grpcAddress;
});

after(async () => {
  await fixture?.close();
});

/** Method names of a generated grpc-js service definition, from its paths ("/pkg.Service/Method"). */
function methodsOf(definition: Record<string, { path: string }>): string[] {
  return Object.values(definition).map((method) => method.path.split("/")[2]!);
}

async function expectReflectionError(promise: Promise<unknown>, code: status, what: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ReflectionError, `${what}: expected a reflection error response, got ${String(err)}`);
    assert.equal(err.code, code, `${what}: ${err.details}`);
    return true;
  });
}

test("list_services: LockService, Health and ServerReflection (v1 and v1alpha)", async () => {
  assert.deepEqual((await listServices(address)).sort(), SERVICES);
  const [alpha] = await reflect(address, [{ listServices: "" }], "v1alpha");
  assert.deepEqual(alpha!.listServicesResponse?.service.map((s) => s.name).sort(), SERVICES);
});

test("describe: the services have the methods of the compiled-in definitions", async () => {
  const lock = await describeService(address, "mcplockd.v1.LockService");
  assert.equal(lock.file, LOCK_FILE);
  assert.deepEqual(lock.methods, methodsOf(LockServiceService));
  assert.deepEqual(lock.methods, ["Acquire", "Release", "KeepAlive", "ListLocks", "ForceRelease", "Watch"]);
  const keepAlive = lock.methodDetails.find((m) => m.name === "KeepAlive")!;
  assert.deepEqual(keepAlive, {
    name: "KeepAlive",
    inputType: "mcplockd.v1.KeepAliveRequest",
    outputType: "mcplockd.v1.KeepAliveResponse",
    clientStreaming: true,
    serverStreaming: true,
  });
  assert.deepEqual((await describeService(address, "grpc.health.v1.Health")).methods, methodsOf(HealthService));
  assert.deepEqual((await describeService(address, "grpc.reflection.v1.ServerReflection")).methods, ["ServerReflectionInfo"]);
});

test("file_containing_symbol: a service, a method, messages, a field, an enum value → lock.proto and its imports", async () => {
  for (const symbol of [
    "mcplockd.v1.LockService",
    "mcplockd.v1.LockService.Acquire",
    "mcplockd.v1.AcquireRequest",
    "mcplockd.v1.Lease",
    "mcplockd.v1.AcquireRequest.resource",
    ".mcplockd.v1.ListLocksResponse",
  ]) {
    const files = await fileContainingSymbol(address, symbol);
    assert.equal(files[0]?.name, LOCK_FILE, `${symbol} is declared in ${LOCK_FILE}`);
    assert.deepEqual(files.slice(1).map((f) => f.name).sort(), LOCK_IMPORTS, `${symbol}: the imports come along`);
  }
  const [health] = await fileContainingSymbol(address, "grpc.health.v1.HealthCheckResponse.SERVING");
  assert.equal(health?.name, "grpc/health/v1/health.proto", "an enum value, scoped like its enum");

  // Source info is embedded: the .proto comments are the API's documentation.
  const [lock] = await fileContainingSymbol(address, "mcplockd.v1.LockService");
  const serviceIndex = lock!.service.findIndex((s) => s.name === "LockService");
  const serviceComment = lock!.sourceCodeInfo?.location.find(
    (l) => l.path.length === 4 && l.path[0] === 6 && l.path[1] === serviceIndex && l.path[2] === 2 && l.path[3] === 0,
  );
  assert.match(serviceComment?.leadingComments ?? "", /Acquire grants/, "the comment on LockService.Acquire");
});

test("file_by_filename, and NOT_FOUND for unknown symbols, members and files", async () => {
  const files = await fileByFilename(address, LOCK_FILE);
  assert.equal(files[0]?.name, LOCK_FILE);
  assert.equal(files[0]?.package, "mcplockd.v1");
  assert.equal((await fileByFilename(address, "grpc/reflection/v1/reflection.proto"))[0]?.package, "grpc.reflection.v1");
  assert.equal((await fileByFilename(address, "google/protobuf/duration.proto"))[0]?.package, "google.protobuf");

  await expectReflectionError(fileContainingSymbol(address, "mcplockd.v1.NoSuchThing"), status.NOT_FOUND, "unknown type");
  await expectReflectionError(fileContainingSymbol(address, "mcplockd.v1.LockService.Steal"), status.NOT_FOUND, "unknown method");
  await expectReflectionError(fileContainingSymbol(address, "mcplockd.v1.AcquireRequest.nope"), status.NOT_FOUND, "unknown field");
  await expectReflectionError(fileContainingSymbol(address, "mcplockd"), status.NOT_FOUND, "a package is not a symbol");
  await expectReflectionError(fileByFilename(address, "mcplockd/v1/nope.proto"), status.NOT_FOUND, "unknown file");

  const [extensions] = await reflect(address, [{ allExtensionNumbersOfType: "mcplockd.v1.Lease" }]);
  assert.deepEqual(extensions!.allExtensionNumbersResponse, { baseTypeName: "mcplockd.v1.Lease", extensionNumber: [] });
  const [empty] = await reflect(address, [{}]);
  assert.equal(empty!.errorResponse?.errorCode, status.INVALID_ARGUMENT, "a request that asks nothing");
});

test("on one stream, imports already sent are skipped; the asked-for file is always sent; answers echo the request", async () => {
  const responses = await reflect(address, [
    { fileContainingSymbol: "mcplockd.v1.LockService", host: "h1" },
    { fileContainingSymbol: "mcplockd.v1.Lease", host: "h2" },
    { fileByFilename: "google/protobuf/duration.proto" },
  ]);
  const counts = responses.map((r) => r.fileDescriptorResponse?.fileDescriptorProto.length ?? 0);
  assert.deepEqual(counts, [3, 1, 1], "lock.proto + 2 imports; then Lease's file alone; then the file asked for by name");
  assert.deepEqual(responses.map((r) => r.validHost), ["h1", "h2", ""]);
  assert.equal(responses[1]!.originalRequest?.fileContainingSymbol, "mcplockd.v1.Lease");
});

/** Runs `mcp-lockd call --address <service> ...args`. */
function cli(args: string[], target = address): Promise<ProcessResult> {
  return runProcess(process.execPath, [CLI_PATH, "call", "--address", target, "--timeout", "10", ...args], { timeoutMs: 30_000 });
}

test("mcp-lockd call: list, describe, and unary calls with JSON, the types learnt through reflection", async () => {
  const list = await cli(["list"]);
  assert.equal(list.code, 0, show(list));
  assert.deepEqual(list.stdout.trim().split("\n"), SERVICES);

  const describe = await cli(["describe", "mcplockd.v1.LockService"]);
  assert.equal(describe.code, 0, show(describe));
  assert.match(describe.stdout, /^mcplockd\.v1\.LockService is a service \(mcplockd\/v1\/lock\.proto\):\nservice LockService \{/);
  assert.match(describe.stdout, /rpc Acquire\(\.mcplockd\.v1\.AcquireRequest\) returns \(\.mcplockd\.v1\.AcquireResponse\);/);
  assert.match(describe.stdout, /rpc KeepAlive\(stream \.mcplockd\.v1\.KeepAliveRequest\) returns \(stream \.mcplockd\.v1\.KeepAliveResponse\);/);
  assert.match(describe.stdout, /\/\/ Release ends a lease/, "the .proto comments come along");
  const everything = await cli(["describe"]);
  assert.equal(everything.code, 0, show(everything));
  for (const name of ["Health", "ServerReflection", "LockService"]) assert.match(everything.stdout, new RegExp(`^service ${name} \\{`, "m"));
  const help = await cli(["--help"]);
  assert.equal(help.code, 0, show(help));
  assert.match(help.stdout, /mcp-lockd call \[--address HOST:PORT\[,HOST:PORT...\]\]/);
  const message = await cli(["describe", "mcplockd.v1.AcquireRequest"]);
  assert.equal(message.code, 0, show(message));
  assert.match(message.stdout, /message AcquireRequest \{[\s\S]*string resource = 1;[\s\S]*\.google\.protobuf\.Duration ttl = \d+;[\s\S]*map<string, string> metadata = \d+;/);

  const acquired = await cli(["mcplockd.v1.LockService/Acquire", '{"resource": "cli-res", "holder": "cli", "ttl": "30s", "metadata": {"k": "v"}}']);
  assert.equal(acquired.code, 0, show(acquired));
  const { lease } = JSON.parse(acquired.stdout) as { lease: Record<string, unknown> };
  assert.equal(lease.resource, "cli-res");
  assert.equal(lease.holder, "cli");
  assert.equal(lease.ttl, "30s");
  assert.deepEqual(lease.metadata, { k: "v" });
  assert.equal(typeof lease.lease_id, "string");

  const listed = await cli(["mcplockd.v1.LockService/ListLocks", '{"resource_prefix": ""}']);
  assert.equal(listed.code, 0, show(listed));
  const { locks } = JSON.parse(listed.stdout) as { locks: Array<Record<string, unknown>> };
  assert.deepEqual(
    locks.map((l) => ({ resource: l.resource, holder: l.holder, lease_id: l.lease_id, waiters: l.waiters, state: l.state })),
    [{ resource: "cli-res", holder: "cli", lease_id: "", waiters: 0, state: "held" }],
    "every field is printed, defaults included; never the lease id",
  );
  // The same lock through the compiled-in client: the CLI talked to the real service.
  assert.deepEqual((await fixture.client.listLocks()).locks.map((l) => l.resource), ["cli-res"]);

  const released = await cli(["mcplockd.v1.LockService/Release", JSON.stringify({ leaseId: lease.lease_id })]);
  assert.equal(released.code, 0, show(released));
  assert.deepEqual(JSON.parse(released.stdout), { released: true });
  assert.deepEqual((await fixture.client.listLocks()).locks, []);
});

test("mcp-lockd call: failures say why, with exit 1 (the server said no) or 64 (the input is wrong)", async () => {
  const cases: Array<{ args: string[]; code: number; stderr: RegExp; target?: string }> = [
    { args: ["mcplockd.v1.LockService/Release", '{"lease_id": "not-a-lease"}'], code: 1, stderr: /NOT_FOUND: lease not found.*\[LEASE_NOT_FOUND\]/ },
    { args: ["mcplockd.v1.LockService/Acquire", '{"resource": "../x"}'], code: 1, stderr: /INVALID_ARGUMENT: resource/ },
    { args: ["mcplockd.v1.LockService/Steal", "{}"], code: 64, stderr: /no method Steal in mcplockd\.v1\.LockService; it has Acquire, Release, KeepAlive, ListLocks/ },
    { args: ["mcplockd.v1.LockService/KeepAlive", "{}"], code: 64, stderr: /bidi streaming: only unary methods/ },
    { args: ["mcplockd.v1.LockService/ListLocks", "{not json"], code: 64, stderr: /not JSON/ },
    { args: ["mcplockd.v1.LockService/ListLocks", '{"no_such_field": 1}'], code: 64, stderr: /not a valid mcplockd\.v1\.ListLocksRequest/ },
    { args: ["no.such.Service/Method"], code: 1, stderr: /reflection: NOT_FOUND: symbol "no\.such\.Service" not found/ },
    { args: ["describe", "mcplockd.v1.Nope"], code: 1, stderr: /NOT_FOUND/ },
    { args: ["frobnicate"], code: 64, stderr: /neither list, describe nor SERVICE\/METHOD/ },
    { args: ["list", "extra"], code: 64, stderr: /too many arguments/ },
    // Port 1 on loopback: nothing listens there.
    { args: ["list"], code: 1, stderr: /UNAVAILABLE: .*is mcp-lockd serving on 127\.0\.0\.1:1\?/, target: "127.0.0.1:1" },
  ];
  // A gRPC server without reflection: both versions are UNIMPLEMENTED.
  const bare = new Server();
  const port = await new Promise<number>((resolve, reject) =>
    bare.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  cases.push({ args: ["list"], code: 1, stderr: /UNIMPLEMENTED: the server has no gRPC reflection, neither v1 nor v1alpha/, target: `127.0.0.1:${port}` });
  try {
    for (const c of cases) {
      const result = await cli(c.args, c.target);
      assert.equal(result.code, c.code, `call ${c.args.join(" ")}: ${show(result)}`);
      assert.match(result.stderr, c.stderr, `call ${c.args.join(" ")}`);
      assert.equal(result.stdout, "", `call ${c.args.join(" ")} prints nothing on stdout`);
    }
  } finally {
    bare.forceShutdown();
  }
});

test("python grpcio (stubs from the vendored reflection.proto): lists services, fetches LockService, calls ListLocks", async () => {
  await access(PYTHON).catch(() => assert.fail(`${PYTHON} is missing; apt-get install -y python3-grpcio python3-grpc-tools`));
  const temp = await makeTempDir();
  try {
    const stubs = join(temp.path, "stubs");
    await mkdir(stubs);
    // -I at the proto's own directory: the stubs are reflection_pb2*.py, not a
    // grpc/reflection/v1/ package tree whose `grpc` would shadow grpcio.
    const protoc = await runProcess(
      PYTHON,
      ["-m", "grpc_tools.protoc", "-I", "proto/grpc/reflection/v1", `--python_out=${stubs}`, `--grpc_python_out=${stubs}`, "reflection.proto"],
      { cwd: ROOT },
    );
    assert.equal(protoc.code, 0, `grpc_tools.protoc failed (apt-get install -y python3-grpc-tools):\n${show(protoc)}`);

    const held = await fixture.client.acquire({ resource: "py-reflect", holder: "node" });
    try {
      const result = await runProcess(PYTHON, [CLIENT_PY, stubs, address], { timeoutMs: 60_000 });
      assert.equal(result.code, 0, show(result));
      const out = JSON.parse(result.stdout) as {
        services: string[];
        files: string[];
        package: string;
        methods: Array<{ name: string; input_type: string; output_type: string; client_streaming: boolean; server_streaming: boolean }>;
        has_comments: boolean;
        unknown_symbol: { code: number; message: string };
        list_locks: { locks: Array<{ resource: string; holder: string }> };
      };
      assert.deepEqual(out.services, SERVICES);
      assert.equal(out.files[0], LOCK_FILE);
      assert.deepEqual(out.files.slice(1).sort(), LOCK_IMPORTS);
      assert.equal(out.package, "mcplockd.v1");
      assert.deepEqual(out.methods.map((m) => m.name), ["Acquire", "Release", "KeepAlive", "ListLocks", "ForceRelease", "Watch"]);
      assert.deepEqual(out.methods[0], {
        name: "Acquire",
        input_type: ".mcplockd.v1.AcquireRequest",
        output_type: ".mcplockd.v1.AcquireResponse",
        client_streaming: false,
        server_streaming: false,
      });
      assert.equal(out.has_comments, true);
      assert.equal(out.unknown_symbol.code, status.NOT_FOUND);
      assert.deepEqual(out.list_locks.locks.map((l) => [l.resource, l.holder]), [["py-reflect", "node"]]);
    } finally {
      await fixture.client.release(held.lease!.leaseId);
    }
  } finally {
    await temp.remove();
  }
});
