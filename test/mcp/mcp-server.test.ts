// `mcp-lockd mcp` as an agent uses it: the MCP SDK's real Client over stdio,
// spawning the command (node, Deno or the single executable, per
// MCP_LOCKD_TEST_RUNTIME) against a real service process. Tools listed with
// schemas and annotations; two sessions contend (busy error naming the
// holder, then FIFO hand-over with higher tokens, with progress while
// waiting, seen by gRPC clients); closing a session releases its locks at
// once; SIGKILL of a session frees them after the ttl; a lost lease is
// reported (logging notification, then the next tool result); bad input is a
// tool error naming the field; locks://status subscriptions notify changes;
// a file-protocol process (Python FileLock) and `mcp-lockd run` are seen and
// respected both ways; bad options exit 64; a cancelled wait leaves the
// queue; an unreachable service is a tool error. (Under Deno, `mcp-lockd run`
// and the option checks use Node, as in test/cli.)
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { unlink } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Progress } from "@modelcontextprotocol/sdk/types.js";
import { runClientCli, startClientCli } from "../cli/client-cli.ts";
import { PYTHON } from "../helpers/python.ts";
import { startServiceFixture, type ServiceFixture } from "../helpers/service-process.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";
import { openMcpSession, textOf, type McpSession } from "./mcp-session.ts";

let fx: ServiceFixture;
const sessions: McpSession[] = [];
/** One session for the tests that need no session of their own (each spawn costs a process start). */
let shared: McpSession;

before(async () => {
  fx = await startServiceFixture();
  shared = await open("shared-agent");
});

after(async () => {
  await Promise.all(sessions.map((session) => session.close().catch(() => {})));
  await fx?.close();
});

async function open(name: string, extraArgs: string[] = []): Promise<McpSession> {
  const session = await openMcpSession(fx.service.grpcAddress, name, extraArgs);
  sessions.push(session);
  return session;
}

async function listed(resource: string) {
  return (await fx.client.listLocks(resource)).locks.find((lock) => lock.resource === resource);
}

function structured(result: { structuredContent?: Record<string, unknown> }): Record<string, unknown> {
  assert.ok(result.structuredContent, "the result has structured content");
  return result.structuredContent;
}

/** Resolves with the first progress notification whose message matches. */
function progressWatcher() {
  const seen: Progress[] = [];
  const waiters = new Set<() => void>();
  return {
    seen,
    onprogress: (progress: Progress) => {
      seen.push(progress);
      for (const waiter of [...waiters]) waiter();
    },
    next(pattern: RegExp): Promise<Progress> {
      return withTimeout(
        new Promise<Progress>((resolve) => {
          const check = () => {
            const match = seen.find((progress) => pattern.test(progress.message ?? ""));
            if (match) {
              waiters.delete(check);
              resolve(match);
            }
          };
          waiters.add(check);
          check();
        }),
        10_000,
        `progress matching ${pattern}`,
      );
    },
  };
}

test("tools are listed with input and output schemas, descriptions and annotations; locks://status is a subscribable resource", async () => {
  const session = shared;
  const { tools } = await session.client.listTools();
  assert.deepEqual(tools.map((tool) => tool.name).sort(), ["lock_acquire", "lock_release", "lock_status"]);
  const byName = new Map(tools.map((tool) => [tool.name, tool]));
  const acquire = byName.get("lock_acquire")!;
  const props = acquire.inputSchema.properties as Record<string, Record<string, unknown>>;
  assert.deepEqual(acquire.inputSchema.required, ["resource"]);
  assert.equal(props.resource!.type, "string");
  assert.ok(typeof props.resource!.pattern === "string");
  assert.equal(props.ttl_seconds!.minimum, 1);
  assert.equal(props.ttl_seconds!.maximum, 3600);
  assert.equal(props.wait_seconds!.maximum, 86400);
  assert.equal(props.purpose!.type, "string");
  assert.ok((acquire.outputSchema?.properties as Record<string, unknown>).fencing_token);
  assert.equal(acquire.annotations?.readOnlyHint, false);
  assert.equal(byName.get("lock_release")!.annotations?.readOnlyHint, false);
  assert.equal(byName.get("lock_status")!.annotations?.readOnlyHint, true);
  assert.deepEqual(byName.get("lock_release")!.inputSchema.required, ["resource"]);
  for (const tool of tools) {
    assert.ok((tool.description ?? "").length > 80, `${tool.name} has a description an agent can act on`);
    assert.ok(tool.outputSchema, `${tool.name} has an output schema`);
  }
  const { resources } = await session.client.listResources();
  assert.deepEqual(resources.map((resource) => [resource.uri, resource.mimeType]), [["locks://status", "application/json"]]);
  assert.equal(session.client.getServerCapabilities()?.resources?.subscribe, true);
  assert.ok(session.client.getServerCapabilities()?.logging);
});

test("two sessions contend: busy error naming the holder, then FIFO hand-over with higher tokens, seen over gRPC", async () => {
  const a = shared;
  const b = await open("agent-b");
  const c = await open("agent-c", ["--holder", "agent C (explicit)"]);

  const first = await a.call("lock_acquire", { resource: "deploy", ttl_seconds: 30, purpose: "deploying gateway v2" });
  assert.equal(first.isError, undefined, textOf(first));
  const grantA = structured(first);
  const holderA = grantA.holder as string;
  // The default holder says who: the MCP client's name, the host, the pid.
  assert.match(holderA, new RegExp(`pid ${a.pid} mcp shared-agent$`));
  assert.equal(grantA.already_held, false);
  const lease = await listed("deploy");
  assert.equal(lease?.holder, holderA);
  assert.equal(lease?.metadata.purpose, "deploying gateway v2");
  assert.equal(String(lease?.fencingToken), String(grantA.fencing_token));

  // Taking it again in the same session changes nothing.
  const again = await a.call("lock_acquire", { resource: "deploy" });
  assert.equal(structured(again).already_held, true);
  assert.equal(structured(again).fencing_token, grantA.fencing_token);

  const busy = await b.call("lock_acquire", { resource: "deploy" });
  assert.equal(busy.isError, true);
  assert.ok(textOf(busy).includes(`held by "${holderA}"`), textOf(busy));
  assert.match(textOf(busy), /expires in \d/);

  // B waits first, then C; each reports progress naming the holder.
  const progressB = progressWatcher();
  const waitB = b.call("lock_acquire", { resource: "deploy", wait_seconds: 20 }, progressB.onprogress);
  await progressB.next(/held by "[^"]*shared-agent" .*1 waiting/);
  const progressC = progressWatcher();
  const waitC = c.call("lock_acquire", { resource: "deploy", wait_seconds: 20 }, progressC.onprogress);
  await progressC.next(/2 waiting/);
  assert.equal(progressB.seen[0]!.total, 20);

  const released = await a.call("lock_release", { resource: "deploy" });
  assert.deepEqual(structured(released), { resource: "deploy", released: true });
  const grantB = structured(await waitB);
  assert.ok((grantB.fencing_token as number) > (grantA.fencing_token as number), "B's token is higher than A's");
  assert.match(grantB.holder as string, /mcp agent-b$/);
  assert.ok((grantB.waited_seconds as number) > 0);
  assert.equal((await listed("deploy"))?.holder, grantB.holder);

  const status = structured(await c.call("lock_status", { prefix: "dep" }));
  const entries = status.locks as Array<Record<string, unknown>>;
  assert.equal(entries.length, 1);
  assert.equal(entries[0]!.holder, grantB.holder);
  assert.equal(entries[0]!.waiters, 1);
  assert.equal(entries[0]!.held_by_this_session, false);
  assert.equal(structured(await b.call("lock_status", {})).locks instanceof Array, true);

  assert.equal(structured(await b.call("lock_release", { resource: "deploy" })).released, true);
  const grantC = structured(await waitC);
  assert.ok((grantC.fencing_token as number) > (grantB.fencing_token as number), "C's token is higher than B's");
  assert.equal(grantC.holder, "agent C (explicit)");
  const mine = (structured(await c.call("lock_status", { prefix: "deploy" })).locks as Array<Record<string, unknown>>)[0]!;
  assert.equal(mine.held_by_this_session, true);

  // Releasing what this session does not hold says so.
  assert.deepEqual(structured(await a.call("lock_release", { resource: "deploy" })), { resource: "deploy", released: false });
  assert.equal(structured(await c.call("lock_release", { resource: "deploy" })).released, true);
  assert.equal(await listed("deploy"), undefined);
});

test("bad input is a tool error naming the field; the session keeps serving", async () => {
  const session = shared;
  const badName = await session.call("lock_acquire", { resource: "../etc/passwd" });
  assert.equal(badName.isError, true);
  assert.match(textOf(badName), /resource/);
  const badTtl = await session.call("lock_acquire", { resource: "ok", ttl_seconds: 7200 });
  assert.equal(badTtl.isError, true);
  assert.match(textOf(badTtl), /ttl_seconds/);
  const badPurpose = await session.call("lock_acquire", { resource: "ok", purpose: "x".repeat(2000) });
  assert.equal(badPurpose.isError, true);
  assert.match(textOf(badPurpose), /purpose: is 2000 bytes; the limit is 1024 bytes/);
  const fine = await session.call("lock_acquire", { resource: "ok" });
  assert.equal(fine.isError, undefined, textOf(fine));
  assert.equal(structured(await session.call("lock_release", { resource: "ok" })).released, true);
});

test("closing a session (stdin closes) releases its locks at once", async () => {
  const session = await open("closer");
  await session.call("lock_acquire", { resource: "close-me", ttl_seconds: 600 });
  await session.call("lock_acquire", { resource: "close-me-too", ttl_seconds: 600 });
  assert.ok(await listed("close-me"));
  await session.close(); // ends stdin, resolves when the process has exited
  assert.equal(await listed("close-me"), undefined, "released, not left to its 600 s ttl");
  assert.equal(await listed("close-me-too"), undefined);
  assert.match(session.stderr(), /session ended \(stdin closed\); releasing its locks/);
});

test("SIGKILL of a session leaves its lock held until the ttl runs out", async () => {
  const session = await open("doomed");
  const grant = structured(await session.call("lock_acquire", { resource: "killed", ttl_seconds: 2 }));
  process.kill(session.pid, "SIGKILL");
  const killedAt = Date.now();
  assert.equal((await listed("killed"))?.holder, grant.holder, "still held right after the kill");
  const next = await fx.client.acquire({ resource: "killed", holder: "next", waitTimeout: { seconds: 10, nanos: 0 } });
  const freedAfter = Date.now() - killedAt;
  assert.ok(freedAfter >= 600, `freed ${freedAfter} ms after the kill: by expiry, not release`);
  assert.ok(freedAfter < 4_000, `freed ${freedAfter} ms after the kill: within the 2 s ttl (and timing slack)`);
  assert.ok(next.lease!.fencingToken > (grant.fencing_token as number));
  await fx.client.release(next.lease!.leaseId);
});

test("a lost lease is reported at once (logging notification) and in the next tool result", async () => {
  const session = await open("loser");
  const grant = structured(await session.call("lock_acquire", { resource: "lose-me", ttl_seconds: 3 }));
  const log = session.nextLog((params) => (params.data as { resource?: string }).resource === "lose-me");
  // The lease file removed behind the service's back: the lease is gone.
  await unlink(join(fx.lockDir, "lose-me.lock"));
  const params = await log;
  assert.equal(params.level, "error");
  const data = params.data as Record<string, unknown>;
  assert.equal(data.event, "lock_lost");
  assert.equal(data.fencing_token, grant.fencing_token);
  assert.equal(data.reason, "expired");

  const status = await session.call("lock_status", {});
  assert.match(textOf(status), /^LOST: this session's lock on "lose-me"/);
  const lost = structured(status).lost_locks as Array<Record<string, unknown>>;
  assert.equal(lost.length, 1);
  assert.equal(lost[0]!.resource, "lose-me");
  assert.equal(lost[0]!.fencing_token, grant.fencing_token);
  // Reported once; the session no longer holds it.
  const next = await session.call("lock_release", { resource: "lose-me" });
  assert.deepEqual(structured(next), { resource: "lose-me", released: false });
});

test("locks://status: read as JSON; a subscriber is notified when the set of locks changes", async () => {
  const session = shared;
  await session.client.subscribeResource({ uri: "locks://status" });
  const update = session.nextResourceUpdate();
  const taken = await fx.client.acquire({ resource: "watched", holder: "grpc-client" });
  assert.equal(await update, "locks://status");
  const read = await session.client.readResource({ uri: "locks://status" });
  const body = JSON.parse((read.contents[0] as { text: string }).text) as { locks: Array<Record<string, unknown>> };
  const entry = body.locks.find((lock) => lock.resource === "watched");
  assert.equal(entry?.holder, "grpc-client");
  assert.equal(read.contents[0]!.mimeType, "application/json");

  const released = session.nextResourceUpdate();
  await fx.client.release(taken.lease!.leaseId);
  assert.equal(await released, "locks://status");
  await session.client.unsubscribeResource({ uri: "locks://status" });
  await assert.rejects(session.client.subscribeResource({ uri: "locks://other" }), /only locks:\/\/status/);
  await waitFor(async () => (await listed("watched")) === undefined, "watched released");
});

const PYTHON_PACKAGE_DIR = fileURLToPath(new URL("../../../clients/python/", import.meta.url));

test("locks of a file-protocol process and of `mcp-lockd run` are seen and respected both ways", async (t) => {
  const session = shared;
  // A Python process holding the lock through the lease file alone (no service).
  const python = spawn(
    PYTHON,
    [
      "-c",
      "import sys\nfrom mcp_lockd import FileLock\n" +
        "with FileLock(sys.argv[1], 'shared', ttl=30, holder='python-file-lock') as lease:\n" +
        "    print('held', lease.fencing_token, flush=True)\n    sys.stdin.read()\n",
      fx.lockDir,
    ],
    { env: { ...process.env, PYTHONPATH: PYTHON_PACKAGE_DIR }, stdio: ["pipe", "pipe", "inherit"] },
  );
  const pythonExited = once(python, "exit");
  t.after(() => python.kill("SIGKILL"));
  let output = "";
  const held = await withTimeout(
    new Promise<RegExpExecArray>((resolve) =>
      python.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        output += chunk;
        const match = /^held (\d+)\n/m.exec(output);
        if (match) resolve(match);
      }),
    ),
    10_000,
    "the Python FileLock to hold the lock",
  );
  const fileToken = Number(held[1]);
  await waitFor(async () => (await listed("shared"))?.holder === "python-file-lock", "the service to see the lease file");
  const busy = await session.call("lock_acquire", { resource: "shared" });
  assert.equal(busy.isError, true);
  assert.match(textOf(busy), /held by "python-file-lock"/);
  const entry = (structured(await session.call("lock_status", { prefix: "shared" })).locks as Array<Record<string, unknown>>)[0]!;
  assert.equal(entry.holder, "python-file-lock");
  assert.equal(entry.fencing_token, fileToken);

  // The MCP session waits; the Python process releases (deletes its file); the session gets it.
  const waiting = session.call("lock_acquire", { resource: "shared", wait_seconds: 20 });
  await waitFor(async () => (await listed("shared"))?.waiters === 1, "the session to wait");
  python.stdin!.end();
  const grant = structured(await waiting);
  assert.ok((grant.fencing_token as number) > fileToken);
  assert.deepEqual(await withTimeout(pythonExited, 10_000, "the Python process to exit"), [0, null]);

  // `mcp-lockd run` waits for the session's lock, then runs with a higher token.
  const run = startClientCli(["run", "shared", "--wait", "20s", "--", "/bin/sh", "-c", "echo token=$MCP_LOCKD_FENCING_TOKEN"], {
    address: fx.service.grpcAddress,
  });
  t.after(() => run.kill("SIGKILL"));
  await run.waitForStderr(/waiting for "shared": held by "[^"]*mcp shared-agent"/);
  assert.equal(structured(await session.call("lock_release", { resource: "shared" })).released, true);
  const [, runToken] = await run.waitForStdout(/token=(\d+)/);
  assert.ok(Number(runToken) > (grant.fencing_token as number));
  assert.equal((await run.exited).code, 0);
});

test("bad options are usage errors (exit 64) before any MCP traffic", async () => {
  const long = await runClientCli(["mcp", "--holder", "x".repeat(300)], { address: fx.service.grpcAddress });
  assert.equal(long.code, 64);
  assert.match(long.stderr, /--holder: is 300 bytes; the limit is 256 bytes/);
  assert.equal(long.stdout, "", "nothing on stdout, which belongs to MCP");
  const address = await runClientCli(["mcp", "--address", "not an address"]);
  assert.equal(address.code, 64);
  assert.match(address.stderr, /--address "not an address": expected HOST:PORT/);
});

test("cancelling a waiting lock_acquire (notifications/cancelled) leaves the queue at once", async () => {
  const holder = await fx.client.acquire({ resource: "cancel-me", holder: "grpc-holder" });
  const cancel = new AbortController();
  const waiting = shared.client.callTool({ name: "lock_acquire", arguments: { resource: "cancel-me", wait_seconds: 60 } }, undefined, {
    signal: cancel.signal,
  });
  await waitFor(async () => (await listed("cancel-me"))?.waiters === 1, "the session to wait");
  cancel.abort(new Error("the user changed their mind"));
  await assert.rejects(waiting, /changed their mind/);
  await waitFor(async () => (await listed("cancel-me"))?.waiters === 0, "the session to leave the queue");
  await fx.client.release(holder.lease!.leaseId);
  assert.equal(await listed("cancel-me"), undefined, "not granted to the cancelled call");
});

test("with the service unreachable, tool calls fail saying so and the session keeps serving", async () => {
  const session = await open("no-service", ["--address", "127.0.0.1:1"]);
  const result = await session.call("lock_acquire", { resource: "anything" });
  assert.equal(result.isError, true);
  assert.match(textOf(result), /is mcp-lockd serving on 127\.0\.0\.1:1\?/);
  const status = await session.call("lock_status", {});
  assert.equal(status.isError, true);
});
