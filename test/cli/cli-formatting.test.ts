// The client commands' parsing and output, without processes: argument
// parsing of run and acquire, where release finds a lease id, the status
// table and JSON, the waiting line, and what reaches a terminal.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import type { LockInfo } from "../../src/client/index.ts";
import { parseAcquireArgs } from "../../src/cli/acquire-command.ts";
import { defaultHolder, resolveAddress, UsageError } from "../../src/cli/client-options.ts";
import { parseAddressList } from "../../src/client/address-list.ts";
import { UnavailableError } from "../../src/client/index.ts";
import { describeFailure } from "../../src/cli/client-failure.ts";
import { printable } from "../../src/cli/display-text.ts";
import { exitCodeForSignal } from "../../src/cli/exit-codes.ts";
import { parseLeaseIdText, resolveLeaseId } from "../../src/cli/lease-id-input.ts";
import { formatLockTable, lockToJson } from "../../src/cli/lock-table.ts";
import { DEFAULT_GRACE_MS, parseRunArgs } from "../../src/cli/run-command.ts";
import { describeHolder, startWaitDisplay, type HeldLock } from "../../src/cli/wait-display.ts";

const LEASE_ID = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcde";
const NOW = Date.parse("2026-01-09T14:30:00.000Z");

function lockInfo(overrides: Partial<LockInfo> = {}): LockInfo {
  return {
    resource: "gateway",
    holder: "ci-42",
    fencingToken: 7n,
    acquiredAt: new Date(NOW - 75_000),
    expiresAt: new Date(NOW + 18_000),
    ttl: 30_000,
    waiters: 2,
    state: "held",
    metadata: {},
    ...overrides,
  };
}

test("run: options before --, the command after it, defaults", () => {
  const parsed = parseRunArgs(["deploy", "--ttl", "10s", "--holder", "me", "--", "sh", "-c", "echo --ttl $1", "--help"], {}, 4242);
  assert.deepEqual(parsed, {
    address: "127.0.0.1:50051",
    connection: { address: "127.0.0.1:50051" },
    resource: "deploy",
    ttl: 10_000,
    wait: Number.POSITIVE_INFINITY,
    holder: "me",
    graceMs: DEFAULT_GRACE_MS,
    command: "sh",
    commandArgs: ["-c", "echo --ttl $1", "--help"],
  });
  const waitOnce = parseRunArgs(["--wait", "0", "--grace", "1.5s", "--address", "localhost:7000", "res", "--", "true"], { MCP_LOCKD_ADDRESS: "127.0.0.1:1" }, 1);
  assert.equal(waitOnce.wait, 0);
  assert.equal(waitOnce.graceMs, 1_500);
  assert.equal(waitOnce.address, "localhost:7000", "--address wins over MCP_LOCKD_ADDRESS");
  assert.equal(parseRunArgs(["res", "--", "true"], { MCP_LOCKD_ADDRESS: "127.0.0.1:7001" }).address, "127.0.0.1:7001");
  assert.match(parseRunArgs(["res", "--", "/usr/bin/make", "secret-arg"], { USER: "alice" }, 99).holder, /^alice@.+ pid 99 \(mcp-lockd run make\)$/);
  assert.ok(!parseRunArgs(["res", "--", "curl", "token=hunter2"], {}, 1).holder.includes("hunter2"), "arguments never reach the holder name");
});

test("run: usage errors say what is wrong", () => {
  const cases: Array<[string[], RegExp]> = [
    [["res", "true"], /after --/],
    [["res", "--"], /no command/],
    [["--", "true"], /which resource/],
    [["a", "b", "--", "true"], /one resource/],
    [["res", "--ttl", "soon", "--", "true"], /--ttl "soon"/],
    [["res", "--grace", "2h", "--", "true"], /--grace/],
    [["res", "--address", "nohost", "--", "true"], /--address/],
    [["res", "--bogus", "--", "true"], /bogus/],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseRunArgs(args, {}), (err: unknown) => err instanceof Error && message.test(err.message), args.join(" "));
  }
});

test("acquire: defaults wait, names the parent process, and rejects extra operands", () => {
  const parsed = parseAcquireArgs(["deploy", "--json"], { USER: "bob" }, 777);
  assert.equal(parsed.wait, Number.POSITIVE_INFINITY);
  assert.equal(parsed.json, true);
  assert.match(parsed.holder, /^bob@.+ pid 777 \(mcp-lockd acquire\)$/);
  assert.throws(() => parseAcquireArgs([], {}), UsageError);
  assert.throws(() => parseAcquireArgs(["a", "b"], {}), UsageError);
});

test("addresses: HOST:PORT, [v6]:PORT and gRPC targets; anything else is a usage error", () => {
  for (const ok of ["127.0.0.1:50051", "localhost:1", "[::1]:50051", "unix:/run/mcp-lockd.sock", "dns:lockd.internal:443"]) {
    assert.equal(resolveAddress(ok, {}), ok);
  }
  for (const bad of ["50051", "127.0.0.1", "http://127.0.0.1:50051", "a b:1", ""]) {
    assert.throws(() => resolveAddress(bad, {}), UsageError, bad);
  }
  assert.equal(resolveAddress(undefined, {}), "127.0.0.1:50051");
  assert.equal(resolveAddress(undefined, { MCP_LOCKD_ADDRESS: "" }), "127.0.0.1:50051", "an empty variable counts as unset");
});

test("addresses: several replicas separated by commas, from the flag or MCP_LOCKD_ADDRESS", () => {
  assert.equal(resolveAddress("127.0.0.1:1,127.0.0.1:2", {}), "127.0.0.1:1,127.0.0.1:2");
  assert.equal(resolveAddress(undefined, { MCP_LOCKD_ADDRESS: "a:1, [::1]:2,unix:/run/x.sock" }), "a:1, [::1]:2,unix:/run/x.sock");
  assert.deepEqual(parseAddressList(" a:1 , b:2 "), ["a:1", "b:2"]);
  assert.deepEqual(parseAddressList("ipv4:127.0.0.1:1,127.0.0.1:2"), ["ipv4:127.0.0.1:1,127.0.0.1:2"], "gRPC's own list stays whole");
  const cases: Array<[string, RegExp]> = [
    ["a:1,", /address 2 of 2 is empty/],
    ["a:1,,b:2", /address 2 of 3 is empty/],
    ["a:1,a:1", /"a:1" is listed twice/],
    ["a:1,nohost", /"nohost": expected HOST:PORT/],
  ];
  for (const [bad, message] of cases) {
    assert.throws(() => resolveAddress(bad, {}), (err: unknown) => err instanceof UsageError && /^--address /.test(err.message) && message.test(err.message), bad);
  }
  const refused = "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:2";
  assert.equal(describeFailure(new UnavailableError(refused), "a:1"), `${refused} (is mcp-lockd serving on a:1?)`);
  assert.equal(
    describeFailure(new UnavailableError(`${refused} (tried a:1, b:2)`), "a:1,b:2"),
    `${refused} (tried a:1, b:2) (is mcp-lockd serving at any of them?)`,
  );
});

test("defaultHolder: at most 256 bytes, no control characters", () => {
  const holder = defaultHolder({ USER: "é".repeat(300) }, 1, "(x)");
  assert.ok(Buffer.byteLength(holder) <= 256);
  assert.ok(!/[\u0000-\u001f]/.test(defaultHolder({ USER: "a\nb\u001b[31m" }, 1, "(x)")));
});

test("lease ids: argument, MCP_LOCKD_LEASE_ID, or stdin with -, bare or as acquire printed them", async () => {
  assert.equal(await resolveLeaseId(LEASE_ID, {}, Readable.from([])), LEASE_ID);
  assert.equal(await resolveLeaseId(undefined, { MCP_LOCKD_LEASE_ID: LEASE_ID }, Readable.from([])), LEASE_ID);
  assert.equal(await resolveLeaseId("-", {}, Readable.from([`${LEASE_ID}\n`])), LEASE_ID);
  const printed = `MCP_LOCKD_RESOURCE=deploy\nMCP_LOCKD_LEASE_ID=${LEASE_ID}\nMCP_LOCKD_FENCING_TOKEN=3\n`;
  assert.equal(await resolveLeaseId("-", {}, Readable.from([printed])), LEASE_ID);
  assert.equal(parseLeaseIdText(`export MCP_LOCKD_LEASE_ID='${LEASE_ID}'`, "x"), LEASE_ID);
  assert.equal(parseLeaseIdText(JSON.stringify({ resource: "deploy", lease_id: LEASE_ID }), "x"), LEASE_ID);
  await assert.rejects(resolveLeaseId(undefined, {}, Readable.from([])), /no lease id/);
  await assert.rejects(resolveLeaseId("-", {}, Readable.from(["MCP_LOCKD_RESOURCE=x\n"])), /no MCP_LOCKD_LEASE_ID/);
  // A malformed id is refused without being echoed.
  await assert.rejects(resolveLeaseId("secret;rm -rf", {}, Readable.from([])), (err: Error) => !err.message.includes("secret"));
  await assert.rejects(resolveLeaseId("x".repeat(129), {}, Readable.from([])), UsageError);
});

test("status table: aligned columns, readable durations, unreadable files, no control characters", () => {
  const table = formatLockTable(
    [
      lockInfo(),
      lockInfo({ resource: "db-migrate", holder: "evil\u001b[2J\u0007", fencingToken: 12345n, waiters: 0, expiresAt: new Date(NOW - 1) }),
      lockInfo({ resource: "broken", holder: "unknown", fencingToken: 0n, state: "unreadable", waiters: 0 }),
    ],
    NOW,
  );
  const lines = table.trimEnd().split("\n");
  assert.equal(lines.length, 4);
  assert.match(lines[0]!, /^RESOURCE +HOLDER +HELD FOR +TTL +EXPIRES IN +FENCING TOKEN +WAITERS$/);
  assert.match(lines[1]!, /^gateway +ci-42 +1m15s +30s +18s +7 +2$/);
  assert.match(lines[2]!, /^db-migrate +evil\?\[2J\? +1m15s +30s +expired +12345 +0$/);
  assert.match(lines[3]!, /^broken +unknown \(unreadable lease file\) .* - +0$/);
  const column = lines[0]!.indexOf("FENCING TOKEN");
  assert.equal(lines[1]!.indexOf("7 "), column, "columns line up");
  assert.ok(!/[\u0000-\u001f]/.test(table.replace(/\n/g, "")), "no control characters reach the terminal");
  assert.equal(formatLockTable([], NOW), "no locks held\n");
});

test("status JSON: the shape of GET /health/locks, no lease id", () => {
  assert.deepEqual(lockToJson(lockInfo({ metadata: { job: "42" } })), {
    resource: "gateway",
    holder: "ci-42",
    acquired_at: "2026-01-09T14:28:45.000Z",
    ttl: 30,
    expires_at: "2026-01-09T14:30:18.000Z",
    fencing_token: 7,
    waiters: 2,
    state: "held",
    metadata: { job: "42" },
  });
  assert.equal(lockToJson(lockInfo({ state: "unreadable", fencingToken: 0n })).fencing_token, null);
});

test("waiting display: one line per holder in logs, one live line on a terminal", async (t) => {
  const held: HeldLock = { resource: "gateway", holder: "ci-42", fencingToken: 7n, acquiredAt: new Date(NOW - 5_000), expiresAt: new Date(NOW + 25_000), waiters: 1 };
  assert.equal(describeHolder(held, NOW), 'held by "ci-42" for 5s (fencing token 7, expires in 25s, 1 waiting)');

  // The display's timers are unref'd (the Acquire call keeps a real process alive): hold the loop here.
  const keepLoop = setInterval(() => {}, 1_000);
  t.after(() => clearInterval(keepLoop));

  // Plain: the same holder twice makes one line; a new grant makes another.
  const listings: HeldLock[][] = [[held], [held], [{ ...held, holder: "ci-43", fencingToken: 8n }], []];
  let polls = 0;
  const plain: string[] = [];
  let allPolled: () => void;
  const polled = new Promise<void>((resolve) => (allPolled = resolve));
  const display = startWaitDisplay({
    resource: "gateway",
    list: async () => {
      const listing = listings[Math.min(polls, listings.length - 1)]!;
      polls += 1;
      if (polls === listings.length) allPolled();
      return [{ ...held, resource: "gateway-other" }, ...listing];
    },
    write: (text) => plain.push(text),
    live: false,
    label: "mcp-lockd run",
    everyMs: 1,
    firstAfterMs: 0,
    now: () => NOW,
  });
  await polled;
  assert.equal(display.stop(), true);
  assert.deepEqual(plain, [
    'mcp-lockd run: waiting for "gateway": held by "ci-42" for 5s (fencing token 7, expires in 25s, 1 waiting)\n',
    'mcp-lockd run: waiting for "gateway": held by "ci-43" for 5s (fencing token 8, expires in 25s, 1 waiting)\n',
  ]);

  const live: string[] = [];
  let livePolled: () => void;
  const once = new Promise<void>((resolve) => (livePolled = resolve));
  const liveDisplay = startWaitDisplay({
    resource: "gateway",
    list: async () => {
      setImmediate(() => livePolled());
      return [held];
    },
    write: (text) => live.push(text),
    live: true,
    columns: 60,
    label: "mcp-lockd run",
    firstAfterMs: 0,
    now: () => NOW,
  });
  await once;
  liveDisplay.stop();
  assert.match(live[0]!, /^\r\x1b\[Kmcp-lockd run: waiting 0ms for "gateway": held by/);
  assert.ok(live[0]!.length - "\r\x1b[K".length <= 59, "the live line fits the terminal");
  assert.equal(live.at(-1), "\r\x1b[K", "stop() clears the live line");
});

test("printable: escapes and bidi overrides become ?", () => {
  assert.equal(printable("a\u001b]0;title\u0007b\u202ec"), "a?]0;title?b?c");
});

test("exit codes for signals are 128 + the platform's number", () => {
  assert.equal(exitCodeForSignal("SIGINT"), 130);
  assert.equal(exitCodeForSignal("SIGTERM"), 143);
  assert.equal(exitCodeForSignal("SIGHUP"), 129);
  assert.equal(exitCodeForSignal("SIGKILL"), 137);
});

test("connection flags: TLS files and a token file are read; bad combinations are usage errors", async () => {
  const { mkdtemp, writeFile, rm } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const { resolveConnection } = await import("../../src/cli/client-options.ts");
  const dir = await mkdtemp(join(tmpdir(), "mcp-lockd-conn-"));
  try {
    await writeFile(join(dir, "ca.pem"), "CA");
    await writeFile(join(dir, "token"), "s3cret\n");
    const connection = resolveConnection({ cacert: join(dir, "ca.pem") }, { MCP_LOCKD_TOKEN_FILE: join(dir, "token") });
    assert.deepEqual(connection, { address: "127.0.0.1:50051", tls: { ca: Buffer.from("CA") }, token: "s3cret" });
    assert.throws(() => resolveConnection({ cert: join(dir, "ca.pem") }, {}), /--cert and --key go together/);
    assert.throws(() => resolveConnection({ "token-file": join(dir, "missing") }, {}), /--token-file .*missing: cannot read it \(ENOENT\)/);
    await writeFile(join(dir, "empty"), "\n");
    assert.throws(() => resolveConnection({ "token-file": join(dir, "empty") }, {}), UsageError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("status --watch: the events add up to the held locks; a re-opened watch starts over; JSON lines have no lease id", async () => {
  const { LockSet, eventToJson, describeEvent } = await import("../../src/cli/lock-event-view.ts");
  const at = (ms: number) => new Date(NOW + ms);
  const event = (type: string, resource: string, extra: Record<string, unknown> = {}) =>
    ({
      type,
      resource,
      state: "held",
      holder: "h",
      fencingToken: 3n,
      acquiredAt: at(-5_000),
      expiresAt: at(25_000),
      ttl: 30_000,
      waiters: 0,
      time: at(0),
      ...extra,
    }) as Parameters<InstanceType<typeof LockSet>["apply"]>[0];
  const locks = new LockSet();
  locks.apply(event("HELD", "a"));
  locks.apply(event("HELD", "b"));
  locks.apply(event("SNAPSHOT_COMPLETE", "", { state: "free", acquiredAt: undefined, expiresAt: undefined }));
  locks.apply(event("WAITERS_CHANGED", "a", { waiters: 2 }));
  locks.apply(event("RELEASED", "b", { state: "free" }));
  assert.deepEqual(locks.list().map((lock) => `${lock.resource} w${lock.waiters}`), ["a w2"]);
  // A re-opened watch: its snapshot replaces what was known.
  locks.apply(event("HELD", "c"));
  locks.apply(event("SNAPSHOT_COMPLETE", "", { state: "free", acquiredAt: undefined, expiresAt: undefined }));
  assert.deepEqual(locks.list().map((lock) => lock.resource), ["c"]);
  assert.equal(formatLockTable(locks.list(), NOW).split("\n")[1], "c         h       5s        30s  25s         3              0");

  const handedOver = event("HANDED_OVER", "c", { holder: "next", previousHolder: "h", previousFencingToken: 3n, fencingToken: 4n });
  assert.deepEqual(eventToJson(handedOver), {
    type: "HANDED_OVER",
    resource: "c",
    state: "held",
    holder: "next",
    fencing_token: 4,
    acquired_at: "2026-01-09T14:29:55.000Z",
    expires_at: "2026-01-09T14:30:25.000Z",
    ttl: 30,
    waiters: 0,
    time: "2026-01-09T14:30:00.000Z",
    previous_holder: "h",
    previous_fencing_token: 3,
  });
  assert.equal(describeEvent(handedOver), "14:30:00 HANDED_OVER c holder=next token=4 from=h waiters=0");
  assert.equal(describeEvent(event("ACQUIRED", "x", { holder: "evil\u001b[2J" })), "14:30:00 ACQUIRED x holder=evil?[2J token=3 waiters=0");
});
