// The file protocol (docs/protocol.md) spoken by two independent
// implementations at once: the service (over gRPC) and mcp_lockd.file_protocol
// (clients/python, driven by file_lock.py here and test/clients/contender.py), a Python
// implementation written from the document alone. Real processes, real files.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { lstat, mkdir, open, readdir, readFile, rename, stat, unlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { status } from "@grpc/grpc-js";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { startServiceFixture, startServiceProcess } from "../helpers/service-process.ts";
import { expectGrpcError, isServiceError, ms, TestLockClient } from "../helpers/lock-client.ts";
import { assertValidLeaseFile, assertValidLockDir, sealedLeaseText } from "../helpers/lease-file-schema.ts";
import { readFenceToken } from "../helpers/fence.ts";
import { fetchHealthLocks } from "../helpers/health-locks.ts";
import { PYTHON } from "../helpers/python.ts";
import { PyDriver } from "../helpers/python-file-driver.ts";
import { waitFor } from "../helpers/wait.ts";

// The contender shared with the Python client tests, in its file-protocol mode (dist/test/file-protocol/*.js
// → the .py source, which tsc does not copy).
const CONTENDER_PY = fileURLToPath(new URL("../../../test/clients/contender.py", import.meta.url));

const seconds = (s: number) => ({ seconds: Math.floor(s), nanos: Math.round((s - Math.floor(s)) * 1e9) });

// ------------------------------------------------------------------ helpers

interface HoldRecord {
  who: string;
  fencing_token: number;
  start: number;
  end: number;
  violation?: string;
}

/** Runs contender.py to completion; kills it if it outlives `timeoutMs`. */
async function runPythonContender(args: string[], timeoutMs: number, children: Set<ChildProcess>): Promise<void> {
  const child = spawn(PYTHON, [CONTENDER_PY, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let output = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    const [code, signal] = (await once(child, "exit")) as [number | null, NodeJS.Signals | null];
    assert.equal(code, 0, `contender.py ${args.join(" ")} ended with ${signal ?? code}:\n${output}`);
  } finally {
    clearTimeout(timer);
    children.delete(child);
  }
}

/** The Node side of the contention test: waiting acquires through the service. */
async function nodeContender(
  address: string,
  who: string,
  resource: string,
  cycles: number,
  marker: string,
): Promise<HoldRecord[]> {
  const client = new TestLockClient(address);
  const records: HoldRecord[] = [];
  try {
    for (let i = 0; i < cycles; i++) {
      const { lease } = await client.acquire(
        { resource, holder: who, ttl: seconds(10), waitTimeout: seconds(30) },
        { deadlineMs: 40_000 },
      );
      assert.ok(lease);
      const start = Date.now();
      let violation: string | undefined;
      try {
        await (await open(marker, "wx")).close();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        violation = `${marker} already existed at the start of the critical section`;
      }
      await delay(Math.random() * 3);
      if (violation === undefined) await unlink(marker);
      const end = Date.now();
      assert.deepEqual(await client.release(lease.leaseId), { released: true });
      records.push({ who, fencing_token: lease.fencingToken, start, end, ...(violation ? { violation } : {}) });
      await delay(Math.random() * 5); // outside the lock, so the contenders interleave
    }
    return records;
  } finally {
    client.close();
  }
}

async function assertPythonWorks(): Promise<void> {
  await stat(PYTHON).catch(() => assert.fail(`${PYTHON} is needed by the file-protocol interop tests`));
}

// ------------------------------------------------------------------ tests

test("python file-protocol contenders and service clients never overlap; tokens strictly increase across both", async (t) => {
  await assertPythonWorks();
  const dir = await makeTempDir();
  const lockDir = join(dir.path, "locks");
  const marker = join(dir.path, "critical");
  const children = new Set<ChildProcess>();
  const service = await startServiceProcess({ lockDir });
  const CYCLES = 20;
  try {
    const outs = [join(dir.path, "py-1.jsonl"), join(dir.path, "py-2.jsonl")];
    const python = Promise.all([
      runPythonContender(["file", lockDir, "shared", String(CYCLES), outs[0]!, marker], 60_000, children),
      runPythonContender(["file", lockDir, "shared", String(CYCLES), outs[1]!, marker], 60_000, children),
    ]);
    python.catch(() => {}); // awaited below
    // Start the service clients once Python holds the lock for the first time (python processes start
    // slower than in-process clients, which could otherwise be done before Python begins).
    const fenceExists = async () => (await stat(join(lockDir, "shared.lock.fence")).catch(() => undefined)) !== undefined;
    await Promise.race([waitFor(fenceExists, "the first python grant", 20_000, 10), python]);
    const [nodeA, nodeB] = await Promise.all([
      nodeContender(service.grpcAddress, "node-a", "shared", CYCLES, marker),
      nodeContender(service.grpcAddress, "node-b", "shared", CYCLES, marker),
      python,
    ]);
    const records: HoldRecord[] = [...nodeA, ...nodeB];
    for (const out of outs) {
      const lines = (await readFile(out, "utf8")).trim().split("\n");
      records.push(...lines.map((line) => JSON.parse(line) as HoldRecord));
    }

    // Every cycle of every participant completed.
    const perWho = new Map<string, number>();
    for (const r of records) perWho.set(r.who, (perWho.get(r.who) ?? 0) + 1);
    assert.equal(perWho.size, 4, `participants: ${[...perWho.keys()].join(", ")}`);
    for (const [who, count] of perWho) assert.equal(count, CYCLES, `${who} completed ${count} cycles`);

    // Nobody found the marker of another holder.
    assert.deepEqual(records.filter((r) => r.violation !== undefined), []);

    // Tokens: positive integers, unique across all participants (each one issued by one rename of
    // the counter; a grant whose commit check failed burns its token, so they may skip).
    const byToken = [...records].sort((a, b) => a.fencing_token - b.fencing_token);
    const tokens = byToken.map((r) => r.fencing_token);
    assert.ok(tokens.every((token) => Number.isSafeInteger(token) && token >= 1), `tokens ${tokens.join(" ")}`);
    assert.equal(new Set(tokens).size, 4 * CYCLES, `a token was granted twice: ${tokens.join(" ")}`);
    // In token order the hold intervals follow each other: a higher token was never granted before a
    // lower one ended (both clocks are the same wall clock, in whole ms). With the uniqueness above,
    // tokens strictly increase in grant order across both implementations.
    for (let i = 1; i < byToken.length; i++) {
      const [a, b] = [byToken[i - 1]!, byToken[i]!];
      assert.ok(a.end <= b.start, `token ${a.fencing_token} (${a.who}) held until ${a.end}, token ${b.fencing_token} (${b.who}) from ${b.start}`);
    }
    // Both kinds of participant really got the lock from each other, not one after the other.
    const kinds = byToken.map((r) => (r.who.startsWith("file-") ? "py" : "node"));
    const handovers = kinds.filter((kind, i) => i > 0 && kind !== kinds[i - 1]).length;
    t.diagnostic(`grant order: ${kinds.join(" ")}`);
    assert.ok(handovers >= 2, `only ${handovers} python<->service handovers in ${kinds.join(" ")}`);

    // The counter bounds every token issued, and nothing is left held.
    const fence = await readFenceToken(lockDir, "shared");
    assert.ok(fence >= byToken.at(-1)!.fencing_token, `fence ${fence}, tokens up to ${byToken.at(-1)!.fencing_token}`);
    assert.equal(await assertValidLockDir(lockDir), 0);
  } finally {
    for (const child of children) child.kill("SIGKILL");
    await service.stop();
    await dir.remove();
  }
});

test("a python-held lease blocks the service, shows in /health/locks, and its release wakes a service waiter at once", async (t) => {
  await assertPythonWorks();
  const { dir, service, client, close } = await startServiceFixture();
  const py = PyDriver.start(dir);
  const latencies: number[] = [];
  try {
    let lastServiceToken = 0;
    for (let round = 1; round <= 3; round++) {
      const holder = `py-holder-${round}`;
      const fenceBefore = await readFenceToken(dir, "handoff");
      const held = await py.call({ op: "acquire", resource: "handoff", holder, ttl: 30, metadata: { round: String(round) } });
      assert.ok(held.ok && held.lease, JSON.stringify(held));
      const token = held.lease.fencing_token;
      // Python issues max(F, P) + 1 (no lease file is left) by renaming the counter to it.
      assert.equal(token, fenceBefore + 1);
      assert.ok(token > lastServiceToken, `python token ${token} is not above the service's ${lastServiceToken}`);
      assert.equal(await readFenceToken(dir, "handoff"), token);
      assert.ok((await lstat(join(dir, "handoff.lock.fence"))).isDirectory());
      const pyFence = await py.call({ op: "fence", resource: "handoff" });
      assert.deepEqual(pyFence.fence, { kind: "dir", value: token });

      if (round === 1) {
        // The Python-written file is a valid lease file without a lease id.
        const document = await assertValidLeaseFile(join(dir, "handoff.lock"));
        assert.equal(document.holder, holder);
        assert.equal(document.fencing_token, token);
        assert.equal(document.pid, py.child.pid);
        assert.equal(document.lease_id_sha256, undefined);
        assert.equal(Date.parse(document.expires_at as string), held.lease.expires_at);
        assert.equal(await assertValidLockDir(dir), 1);

        // The service honours it: try-once is ABORTED and names the Python holder.
        await expectGrpcError(client.acquire({ resource: "handoff", holder: "svc-try-once" }), status.ABORTED, [`"${holder}"`]);

        // /health/locks and ListLocks show the Python holder.
        const entry = (await fetchHealthLocks(service)).find((lock) => lock.resource === "handoff");
        assert.ok(entry, "handoff missing from /health/locks");
        assert.equal(entry.holder, holder);
        assert.equal(entry.fencing_token, token);
        assert.equal(entry.state, "held");
        assert.equal(entry.ttl, 30);
        assert.equal(entry.expires_at, new Date(held.lease.expires_at).toISOString());
        assert.deepEqual(entry.metadata, { round: "1" });
        const listed = (await client.listLocks("handoff")).locks;
        assert.equal(listed.length, 1);
        assert.equal(listed[0]!.holder, holder);
        assert.equal(listed[0]!.leaseId, "");
      }

      // A service client waits; once it is queued, Python releases by deleting its file.
      const waiting = client.acquire(
        { resource: "handoff", holder: `svc-waiter-${round}`, ttl: seconds(10), waitTimeout: seconds(20) },
        { deadlineMs: 30_000 },
      );
      waiting.catch(() => {}); // awaited below; avoid an unhandled rejection if an assert fails first
      await waitFor(async () => (await client.listLocks("handoff")).locks[0]?.waiters === 1, "the service waiter to be queued", 5_000, 10);
      const releasedAt = Date.now();
      const released = await py.call({ op: "release", fencing_token: token });
      assert.deepEqual([released.ok, released.released], [true, true], JSON.stringify(released));
      const { lease } = await waiting;
      latencies.push(Date.now() - releasedAt);
      assert.ok(lease);
      assert.equal(lease.holder, `svc-waiter-${round}`);
      // No reservations (version 2): the service's token is the next one.
      assert.equal(lease.fencingToken, token + 1);
      assert.ok((await readFenceToken(dir, "handoff")) >= lease.fencingToken);
      lastServiceToken = lease.fencingToken;
      assert.deepEqual(await client.release(lease.leaseId), { released: true });
    }
    // The grant must come from the directory watch (milliseconds), not the 2 s safety rescan.
    // If the watch did not work, each latency would be spread over 0..2000 ms.
    const sorted = [...latencies].sort((a, b) => a - b);
    t.diagnostic(`python release -> service grant: ${latencies.join(", ")} ms`);
    assert.ok(sorted.every((latency) => latency < 1_500), `handover latencies ${latencies.join(", ")} ms`);
    assert.ok(sorted[1]! < 750, `median handover latency ${sorted[1]} ms (latencies ${latencies.join(", ")})`);
  } finally {
    await py.close();
    await close();
  }
});

test("a service-held lease makes a python acquire time out busy; python gets it once released, and renews it", async () => {
  await assertPythonWorks();
  const { dir, client, close } = await startServiceFixture();
  const py = PyDriver.start(dir);
  try {
    const { lease } = await client.acquire({ resource: "reverse", holder: "svc-holder", ttl: seconds(30) });
    assert.ok(lease);

    const busy = await py.call({ op: "acquire", resource: "reverse", holder: "py-waiter", ttl: 10, wait_timeout: 0.3 });
    assert.equal(busy.ok, false, JSON.stringify(busy));
    assert.equal(busy.error, "ResourceBusyError", busy.message);
    assert.equal(busy.state?.kind, "held");
    assert.equal(busy.state?.holder, "svc-holder");
    assert.equal(busy.state?.fencing_token, lease.fencingToken);
    assert.ok(busy.finished - busy.started >= 290, `python gave up after ${busy.finished - busy.started} ms`);
    // The service's lease file was left as it was.
    const document = await assertValidLeaseFile(join(dir, "reverse.lock"));
    assert.equal(document.holder, "svc-holder");
    assert.match(document.lease_id_sha256 as string, /^[0-9a-f]{64}$/);

    // Python waits (polling) while the service client releases.
    const fenceBefore = await readFenceToken(dir, "reverse");
    assert.ok(fenceBefore >= lease.fencingToken, `fence ${fenceBefore} is below the service's token ${lease.fencingToken}`);
    const pending = py.call({ op: "acquire", resource: "reverse", holder: "py-waiter", ttl: 10, wait_timeout: 10 });
    assert.deepEqual(await client.release(lease.leaseId), { released: true });
    const got = await pending;
    assert.ok(got.ok && got.lease, JSON.stringify(got));
    // The next token after the service's (version 2 has no reserved blocks).
    assert.equal(got.lease.fencing_token, fenceBefore + 1);
    await assertValidLeaseFile(join(dir, "reverse.lock"));
    await expectGrpcError(client.acquire({ resource: "reverse", holder: "svc-again" }), status.ABORTED, ['"py-waiter"']);

    // A Python renewal moves expires_at, and the service reads the new value.
    await delay(20);
    const renewed = await py.call({ op: "renew", fencing_token: got.lease.fencing_token });
    assert.ok(renewed.ok && renewed.lease, JSON.stringify(renewed));
    assert.ok(renewed.lease.expires_at > got.lease.expires_at);
    // The service learns of it from the directory watch, then re-reads the file: not at once.
    await waitFor(
      async () => ms((await client.listLocks("reverse")).locks[0]?.expiresAt) === renewed.lease!.expires_at,
      "the listing to show python's renewal",
      5_000,
      10,
    );
    const renewedDocument = await assertValidLeaseFile(join(dir, "reverse.lock"));
    assert.equal(renewedDocument.acquired_at, new Date(got.lease.acquired_at).toISOString());

    // Python releases; the service grants the next token.
    const released = await py.call({ op: "release", fencing_token: got.lease.fencing_token });
    assert.equal(released.released, true);
    const next = await client.acquire({ resource: "reverse", holder: "svc-after", waitTimeout: seconds(5) });
    // The service issues the token after Python's.
    assert.equal(next.lease?.fencingToken, got.lease.fencing_token + 1);
  } finally {
    await py.close();
    await close();
  }
});

// Each case is a state of <dir>/<R>.lock (and its counter and guard) made by hand. The service and
// file_lock.py each decide, in their own lock dir, whether a try-once acquire is granted.
interface Case {
  name: string;
  /** The lease file's text, given the resource name and now; undefined: no lease file. */
  lease?: (resource: string, now: number) => string;
  /** Set the lease file's mtime this many seconds into the past. */
  mtimeAgo?: number;
  /** A version-1 counter file's text (converted to a directory by the first version-2 grant). */
  fence?: (resource: string) => string;
  /** A version-2 counter: the directory <R>.lock.fence/ holding files of these names. */
  fenceDir?: string[];
  /** Make a guard directory whose mtime is this many seconds old. */
  guardAgo?: number;
  expect: { outcome: "granted"; token: number } | { outcome: "busy"; holder: string; kind: "held" | "unreadable" } | { outcome: "error" };
}

const iso = (t: number) => new Date(t).toISOString();
/** An RFC 3339 time of instant `t` written with a ±hh:mm offset. */
function withOffset(t: number, offsetMinutes: number): string {
  const local = new Date(t + offsetMinutes * 60_000).toISOString().slice(0, -1);
  const sign = offsetMinutes < 0 ? "-" : "+";
  const abs = Math.abs(offsetMinutes);
  return `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}
function leaseText(resource: string, fields: Record<string, unknown>): string {
  const now = Date.now();
  return JSON.stringify({
    version: 1,
    resource,
    holder: "hand-made",
    acquired_at: iso(now - 60_000),
    renewed_at: iso(now - 60_000),
    ttl: 30,
    expires_at: iso(now + 60_000),
    fencing_token: 7,
    pid: 4242,
    hostname: "elsewhere",
    ...fields,
  });
}
const fenceText = (token: number) => (resource: string) => JSON.stringify({ version: 1, resource, fencing_token: token });
/** A version 3 lease file's text: leaseText's fields, version 3, the checksum last. */
const v3LeaseText = (resource: string, fields: Record<string, unknown>) =>
  sealedLeaseText(JSON.parse(leaseText(resource, { version: 3, ...fields })) as Record<string, unknown>);

const CASES: Case[] = [
  { name: "free", expect: { outcome: "granted", token: 1 } },
  { name: "live", lease: (r) => leaseText(r, {}), fence: fenceText(7), expect: { outcome: "busy", holder: "hand-made", kind: "held" } },
  { name: "expired", lease: (r, now) => leaseText(r, { expires_at: iso(now - 1_000) }), fence: fenceText(7), expect: { outcome: "granted", token: 8 } },
  {
    name: "far-future-expiry-old-mtime",
    lease: (r) => leaseText(r, { expires_at: "2999-01-01T00:00:00.000Z", fencing_token: 3 }),
    mtimeAgo: 3_601,
    fence: fenceText(3),
    expect: { outcome: "granted", token: 4 },
  },
  {
    name: "far-future-expiry-fresh",
    lease: (r) => leaseText(r, { expires_at: "2999-01-01T00:00:00.000Z" }),
    fence: fenceText(7),
    expect: { outcome: "busy", holder: "hand-made", kind: "held" },
  },
  { name: "empty", lease: () => "", expect: { outcome: "busy", holder: "unknown", kind: "unreadable" } },
  { name: "empty-old", lease: () => "", mtimeAgo: 3_601, fence: fenceText(5), expect: { outcome: "granted", token: 6 } },
  { name: "not-json", lease: () => "{\"version\": 1, \"resou", expect: { outcome: "busy", holder: "unknown", kind: "unreadable" } },
  {
    name: "version-2-expired",
    lease: (r, now) => leaseText(r, { version: 2, expires_at: iso(now - 1_000) }),
    fence: fenceText(7),
    expect: { outcome: "granted", token: 8 },
  },
  {
    // Version 3 without its checksum: unreadable to version 2 readers (version) and 3 (checksum) alike.
    name: "version-3-no-checksum-expired",
    lease: (r, now) => leaseText(r, { version: 3, expires_at: iso(now - 1_000) }),
    fence: fenceText(7),
    expect: { outcome: "busy", holder: "unknown", kind: "unreadable" },
  },
  {
    name: "version-4-expired",
    lease: (r, now) => leaseText(r, { version: 4, expires_at: iso(now - 1_000) }),
    fence: fenceText(7),
    expect: { outcome: "busy", holder: "unknown", kind: "unreadable" },
  },
  {
    name: "resource-mismatch",
    lease: (_r, now) => leaseText("other", { expires_at: iso(now - 1_000) }),
    expect: { outcome: "busy", holder: "unknown", kind: "unreadable" },
  },
  {
    name: "token-zero",
    lease: (r, now) => leaseText(r, { fencing_token: 0, expires_at: iso(now - 1_000) }),
    expect: { outcome: "busy", holder: "unknown", kind: "unreadable" },
  },
  {
    name: "ttl-over-3600",
    lease: (r, now) => leaseText(r, { ttl: 3_601, expires_at: iso(now - 1_000) }),
    fence: fenceText(7),
    expect: { outcome: "busy", holder: "unknown", kind: "unreadable" },
  },
  {
    name: "metadata-not-strings",
    lease: (r, now) => leaseText(r, { metadata: { n: 1 }, expires_at: iso(now - 1_000) }),
    fence: fenceText(7),
    expect: { outcome: "busy", holder: "unknown", kind: "unreadable" },
  },
  {
    name: "unknown-fields-live",
    lease: (r) => leaseText(r, { x_writer: { name: "someone" }, lease_id_sha256: "a".repeat(64) }),
    fence: fenceText(7),
    expect: { outcome: "busy", holder: "hand-made", kind: "held" },
  },
  {
    name: "unknown-fields-expired",
    lease: (r, now) => leaseText(r, { x_writer: [1, 2], ttl: 0.5, expires_at: iso(now - 1_000) }),
    fence: fenceText(9),
    expect: { outcome: "granted", token: 10 },
  },
  {
    // 5 s ago, written at +02:00: read without its offset it would look 2 h in the future.
    name: "offset-expired",
    lease: (r, now) => leaseText(r, { expires_at: withOffset(now - 5_000, 120) }),
    fence: fenceText(7),
    expect: { outcome: "granted", token: 8 },
  },
  {
    // In 60 s, written at -05:00: read without its offset it would look 5 h in the past.
    name: "offset-live",
    lease: (r, now) => leaseText(r, { expires_at: withOffset(now + 60_000, -300) }),
    fence: fenceText(7),
    expect: { outcome: "busy", holder: "hand-made", kind: "held" },
  },
  { name: "corrupt-fence", fence: () => "{\"version\":1,\"resource\":", expect: { outcome: "error" } },
  { name: "fence-of-another-resource", fence: () => fenceText(4)("other"), expect: { outcome: "error" } },
  { name: "stale-guard", guardAgo: 11, fence: fenceText(2), expect: { outcome: "granted", token: 3 } },
  { name: "fence-dir-free", fenceDir: ["41"], expect: { outcome: "granted", token: 42 } },
  {
    name: "fence-dir-below-expired-token",
    lease: (r, now) => leaseText(r, { version: 2, fencing_token: 9, expires_at: iso(now - 1_000) }),
    fenceDir: ["7"],
    expect: { outcome: "granted", token: 10 },
  },
  { name: "fence-dir-empty", fenceDir: [], expect: { outcome: "error" } },
  { name: "fence-dir-two-files", fenceDir: ["4", "5"], expect: { outcome: "error" } },
  { name: "fence-dir-leading-zero", fenceDir: ["07"], expect: { outcome: "error" } },
];

/** Writes a case's files for `resource` into `dir` (lease file via temp + rename, so no reader sees it torn). */
async function setUpCase(dir: string, resource: string, c: Case): Promise<void> {
  const now = Date.now();
  if (c.fence) await writeFile(join(dir, `${resource}.lock.fence`), c.fence(resource));
  if (c.fenceDir) {
    await mkdir(join(dir, `${resource}.lock.fence`));
    for (const name of c.fenceDir) await writeFile(join(dir, `${resource}.lock.fence`, name), "");
  }
  if (c.guardAgo !== undefined) {
    const guard = join(dir, `${resource}.lock.guard`);
    await mkdir(guard);
    const then = new Date(now - c.guardAgo * 1000);
    await utimes(guard, then, then);
  }
  if (c.lease) {
    const temp = join(dir, `.${resource}.test.tmp`);
    await writeFile(temp, c.lease(resource, now));
    if (c.mtimeAgo !== undefined) {
      const then = new Date(now - c.mtimeAgo * 1000);
      await utimes(temp, then, then);
    }
    await rename(temp, join(dir, `${resource}.lock`));
  }
}

/**
 * Sets up each case twice, in the service's lock dir and in a dir only Python uses (so the service
 * does not reclaim anything under Python's feet), makes one try-once acquire on each side, and
 * returns every disagreement with the expected outcome.
 */
async function classifyOnBothSides(
  cases: Case[],
  afterwards: (serviceDir: string, pythonDir: string) => Promise<void> = async () => {},
): Promise<string[]> {
  await assertPythonWorks();
  const { dir, lockDir: serviceDir, client, close } = await startServiceFixture({ lockSubdir: "service" });
  const pythonDir = join(dir, "python");
  const py = PyDriver.start(pythonDir); // it touches pythonDir only when given a command
  try {
    await mkdir(pythonDir);
    const outcomes = await Promise.all(
      cases.map(async (c) => {
        const resource = `case-${c.name}`;
        await Promise.all([setUpCase(serviceDir, resource, c), setUpCase(pythonDir, resource, c)]);
        const [svc, python] = await Promise.all([
          client.acquire({ resource, holder: "svc-case", ttl: seconds(5) }).then(
            ({ lease }) => ({ outcome: "granted", token: lease?.fencingToken }) as const,
            (err: unknown) => {
              assert.ok(isServiceError(err), String(err));
              return err.code === status.ABORTED
                ? ({ outcome: "busy", details: err.details } as const)
                : ({ outcome: "error", code: err.code, details: err.details } as const);
            },
          ),
          py.call({ op: "acquire", resource, holder: "py-case", ttl: 5 }),
        ]);
        return { c, resource, svc, python };
      }),
    );
    const problems: string[] = [];
    for (const { c, resource, svc, python } of outcomes) {
      const e = c.expect;
      const pyOutcome = python.ok ? "granted" : python.error === "ResourceBusyError" ? "busy" : "error";
      if (svc.outcome !== e.outcome) problems.push(`${c.name}: service ${JSON.stringify(svc)}, expected ${e.outcome}`);
      if (pyOutcome !== e.outcome) problems.push(`${c.name}: python ${JSON.stringify(python)}, expected ${e.outcome}`);
      if (e.outcome === "granted") {
        if (svc.outcome === "granted" && svc.token !== e.token) problems.push(`${c.name}: service token ${svc.token}, expected ${e.token}`);
        if (python.ok && python.lease?.fencing_token !== e.token) {
          problems.push(`${c.name}: python token ${python.lease?.fencing_token}, expected ${e.token}`);
        }
        if (python.ok) await assertValidLeaseFile(join(pythonDir, `${resource}.lock`));
      }
      if (e.outcome === "busy") {
        if (svc.outcome === "busy" && !svc.details.includes(`"${e.holder}"`)) problems.push(`${c.name}: service said ${svc.details}`);
        if (!python.ok && (python.state?.kind !== e.kind || (e.kind === "held" && python.state?.holder !== e.holder))) {
          problems.push(`${c.name}: python state ${JSON.stringify(python.state)}`);
        }
      }
      if (e.outcome === "error") {
        if (svc.outcome === "error" && svc.code !== status.INTERNAL) problems.push(`${c.name}: service code ${svc.code}`);
        if (!python.ok && python.error !== "CorruptFenceError") problems.push(`${c.name}: python error ${python.error}`);
      }
    }
    await afterwards(serviceDir, pythonDir);
    return problems;
  } finally {
    await py.close();
    await close();
  }
}

test("python and the service classify hand-made lease files, counters and guards the same way", async () => {
  const problems = await classifyOnBothSides(CASES, async (serviceDir, pythonDir) => {
    // The stale guard was broken and removed by both; the corrupt counters were left for an operator;
    // a version-1 counter file became a version-2 directory naming the token issued.
    for (const base of [serviceDir, pythonDir]) {
      await assert.rejects(stat(join(base, "case-stale-guard.lock.guard")), { code: "ENOENT" });
      assert.equal(await readFile(join(base, "case-corrupt-fence.lock.fence"), "utf8"), "{\"version\":1,\"resource\":");
      assert.ok((await lstat(join(base, "case-expired.lock.fence"))).isDirectory());
      assert.equal(await readFenceToken(base, "case-expired"), 8);
      assert.deepEqual((await readdir(join(base, "case-fence-dir-two-files.lock.fence"))).sort(), ["4", "5"]);
    }
  });
  assert.deepEqual(problems, []);
});

// Files where the service's parser (src/store/lease-file-format.ts) departs from docs/protocol.md §2
// and docs/lock-file.schema.json. Python follows the document. Both departures are safe (no second
// holder) but change how long a resource stays blocked. Expected to fail until the service is fixed.
const DOCUMENT_EDGE_CASES: Case[] = [
  {
    // RFC 3339 §5.6 (NOTE) allows "t" and "z" in lower case, and the schema's date-time format accepts
    // them. The service's RFC3339 regex does not, so it calls this expired lease unreadable (busy for
    // an hour) instead of expired.
    name: "lowercase-t-z-expired",
    lease: (r, now) =>
      leaseText(r, { expires_at: iso(now - 1_000).replace("T", "t").replace("Z", "z"), acquired_at: iso(now - 60_000).toLowerCase() }),
    fence: fenceText(7),
    expect: { outcome: "granted", token: 8 },
  },
  {
    // renewed_at is optional, but when present it is an RFC 3339 time (§2 table, schema). The service
    // ignores it, so it treats this invalid file as an expired lease and grants the resource, where
    // §2 says an invalid file is "never treated as free" before mtime + 3600 s.
    name: "bad-renewed-at-expired",
    lease: (r, now) => leaseText(r, { renewed_at: "yesterday", expires_at: iso(now - 1_000) }),
    fence: fenceText(7),
    expect: { outcome: "busy", holder: "unknown", kind: "unreadable" },
  },
];

test("edge files: the service reads lease files as docs/protocol.md says (lower-case RFC 3339, invalid renewed_at)", async () => {
  assert.deepEqual(await classifyOnBothSides(DOCUMENT_EDGE_CASES), []);
});

// The reader rules version 2 makes exact (issue 14): each file below is expired-looking or
// almost valid, and both readers must agree on it.
const expiredWith = (fields: Record<string, unknown>) => (r: string, now: number) => leaseText(r, { expires_at: iso(now - 1_000), ...fields });
const V2_READER_CASES: Case[] = [
  { name: "feb-30", lease: expiredWith({ expires_at: "2026-02-30T00:00:00Z" }), fenceDir: ["7"], expect: { outcome: "busy", holder: "unknown", kind: "unreadable" } },
  { name: "hour-24", lease: expiredWith({ expires_at: "2026-01-01T24:00:00Z" }), fenceDir: ["7"], expect: { outcome: "busy", holder: "unknown", kind: "unreadable" } },
  {
    name: "fraction-10-digits",
    lease: expiredWith({ expires_at: "2026-01-01T00:00:00.0000000001Z" }),
    fenceDir: ["7"],
    expect: { outcome: "busy", holder: "unknown", kind: "unreadable" },
  },
  { name: "null-renewed-at", lease: expiredWith({ renewed_at: null }), fenceDir: ["7"], expect: { outcome: "busy", holder: "unknown", kind: "unreadable" } },
  { name: "null-metadata", lease: expiredWith({ metadata: null }), fenceDir: ["7"], expect: { outcome: "busy", holder: "unknown", kind: "unreadable" } },
  { name: "token-true", lease: expiredWith({ fencing_token: true }), fenceDir: ["7"], expect: { outcome: "busy", holder: "unknown", kind: "unreadable" } },
  {
    name: "resource-trailing-newline",
    lease: (r, now) => leaseText(`${r}\n`, { expires_at: iso(now - 1_000) }),
    fenceDir: ["7"],
    expect: { outcome: "busy", holder: "unknown", kind: "unreadable" },
  },
  {
    // 7.0 is the integer 7 (JavaScript cannot tell them apart).
    name: "token-7.0",
    lease: (r, now) => expiredWith({})(r, now).replace('"fencing_token":7', '"fencing_token":7.0'),
    fenceDir: ["7"],
    expect: { outcome: "granted", token: 8 },
  },
  {
    // An unreadable file older than the maximum ttl is replaced, and its integer token still counts.
    name: "old-invalid-with-token",
    lease: (r) => leaseText(r, { holder: null, fencing_token: 40 }),
    mtimeAgo: 3_601,
    fenceDir: ["5"],
    expect: { outcome: "granted", token: 41 },
  },
];

test("version 2 reader rules: impossible dates, fraction digits, nulls, booleans, whole-string names, tokens of old invalid files", async () => {
  assert.deepEqual(await classifyOnBothSides(V2_READER_CASES), []);
});

// Version 3 (issue 12): a file whose checksum verifies is read as versions 1 and 2 are; a torn one,
// or one whose checksum is not exactly its last member, is unreadable (busy), never free.
const V3_READER_CASES: Case[] = [
  { name: "v3-expired", lease: (r, now) => v3LeaseText(r, { expires_at: iso(now - 1_000) }), fenceDir: ["7"], expect: { outcome: "granted", token: 8 } },
  { name: "v3-live", lease: (r) => v3LeaseText(r, {}), fenceDir: ["7"], expect: { outcome: "busy", holder: "hand-made", kind: "held" } },
  {
    name: "v3-no-trailing-newline-expired",
    lease: (r, now) => v3LeaseText(r, { expires_at: iso(now - 1_000) }).trimEnd(),
    fenceDir: ["7"],
    expect: { outcome: "granted", token: 8 },
  },
  {
    // A torn write: one byte differs from what the checksum covers.
    name: "v3-torn-expired",
    lease: (r, now) => v3LeaseText(r, { expires_at: iso(now - 1_000) }).replace('"holder":"hand-made"', '"holder":"hand-mode"'),
    fenceDir: ["7"],
    expect: { outcome: "busy", holder: "unknown", kind: "unreadable" },
  },
  {
    name: "v3-truncated-expired",
    lease: (r, now) => v3LeaseText(r, { expires_at: iso(now - 1_000) }).slice(0, -3),
    fenceDir: ["7"],
    expect: { outcome: "busy", holder: "unknown", kind: "unreadable" },
  },
  {
    name: "v3-checksum-not-last-expired",
    lease: (r, now) => v3LeaseText(r, { expires_at: iso(now - 1_000) }).replace(/\}\n$/, ',"x":1}\n'),
    fenceDir: ["7"],
    expect: { outcome: "busy", holder: "unknown", kind: "unreadable" },
  },
  {
    // Versions 1 and 2 have no checksum: one there is an unknown field.
    name: "v2-with-a-checksum-member-expired",
    lease: (r, now) => leaseText(r, { version: 2, expires_at: iso(now - 1_000), checksum: "not one" }),
    fenceDir: ["7"],
    expect: { outcome: "granted", token: 8 },
  },
];

test("version 3 reader rules: the checksum verified by both, torn and truncated files unreadable, versions 1 and 2 without one", async () => {
  assert.deepEqual(await classifyOnBothSides(V3_READER_CASES), []);
});

test("a python lease renewed in place is seen by the service as held with the new expiry", async () => {
  await assertPythonWorks();
  const { dir, client, close } = await startServiceFixture();
  const py = PyDriver.start(dir);
  try {
    const held = await py.call({ op: "acquire", resource: "in-place", holder: "py-in-place", ttl: 30 });
    assert.ok(held.ok && held.lease, JSON.stringify(held));
    const path = join(dir, "in-place.lock");
    const before = await stat(path);
    assert.equal(held.lease.ino, before.ino);
    await waitFor(
      async () => ms((await client.listLocks("in-place")).locks[0]?.expiresAt) === held.lease!.expires_at,
      "the service to read python's grant",
      5_000,
      10,
    );
    for (let round = 1; round <= 2; round++) {
      const previous = (await py.call({ op: "state", resource: "in-place" })).state!.expires_at!;
      await delay(5); // so the renewal's times differ from the last write's
      const renewed = await py.call({ op: "renew", fencing_token: held.lease.fencing_token });
      assert.ok(renewed.ok && renewed.lease, JSON.stringify(renewed));
      assert.ok(renewed.lease.expires_at > previous, `round ${round}: ${renewed.lease.expires_at} <= ${previous}`);
      // In place: the same inode and length, nothing else in the lock dir.
      const after = await stat(path);
      assert.deepEqual([after.ino, after.size, after.nlink], [before.ino, before.size, 1]);
      assert.equal(renewed.lease.ino, before.ino);
      assert.deepEqual((await readdir(dir)).sort(), ["in-place.lock", "in-place.lock.fence"]);
      const document = await assertValidLeaseFile(path); // the checksum verifies
      assert.equal(document.version, 3);
      assert.equal(Date.parse(document.expires_at as string), renewed.lease.expires_at);
      // The service sees the renewal (its directory watch, then a re-read): held, the new expiry.
      await waitFor(
        async () => ms((await client.listLocks("in-place")).locks[0]?.expiresAt) === renewed.lease!.expires_at,
        "the listing to show python's in-place renewal",
        5_000,
        10,
      );
      const listed = (await client.listLocks("in-place")).locks[0]!;
      assert.equal(listed.holder, "py-in-place");
      assert.equal(listed.fencingToken, held.lease.fencing_token);
      await expectGrpcError(client.acquire({ resource: "in-place", holder: "svc-try" }), status.ABORTED, ['"py-in-place"']);
    }
    const released = await py.call({ op: "release", fencing_token: held.lease.fencing_token });
    assert.equal(released.released, true);
    const next = await client.acquire({ resource: "in-place", holder: "svc-after", waitTimeout: seconds(5) });
    assert.equal(next.lease?.fencingToken, held.lease.fencing_token + 1);
  } finally {
    await py.close();
    await close();
  }
});

test("the service's version 3 lease file, read by python: the checksum verifies and expires_at is renewed_at + ttl + 1 s", async () => {
  await assertPythonWorks();
  const { dir, client, close } = await startServiceFixture();
  const py = PyDriver.start(dir);
  const stream = client.keepAlive();
  try {
    const TTL_S = 5;
    const { lease } = await client.acquire({ resource: "svc-v3", holder: "svc-holder", ttl: seconds(TTL_S) });
    assert.ok(lease);
    const path = join(dir, "svc-v3.lock");
    const checkFile = async () => {
      const document = await assertValidLeaseFile(path); // schema and checksum
      assert.equal(document.version, 3);
      const renewedAt = Date.parse(document.renewed_at as string);
      const expiresAt = Date.parse(document.expires_at as string);
      // The service's horizon: ttl + 1 s past the write (both times in whole ms).
      assert.ok(Math.abs(expiresAt - renewedAt - (TTL_S * 1000 + 1000)) <= 1, `renewed_at ${document.renewed_at}, expires_at ${document.expires_at}`);
      const seen = await py.call({ op: "state", resource: "svc-v3" });
      assert.ok(seen.ok && seen.state, JSON.stringify(seen));
      assert.deepEqual(
        [seen.state.kind, seen.state.reason, seen.state.version, seen.state.holder, seen.state.fencing_token],
        ["held", null, 3, "svc-holder", lease.fencingToken],
      );
      assert.equal(seen.state.expires_at, expiresAt);
      assert.equal(seen.state.renewed_at, renewedAt);
      return expiresAt;
    };
    const granted = await checkFile();
    const before = await stat(path);
    // A renewal more than a second after the last write is written (in place, by the service).
    await delay(1_100);
    const answer = await stream.renew(lease.leaseId);
    assert.equal(answer.leaseId, lease.leaseId);
    await waitFor(async () => Date.parse((await assertValidLeaseFile(path)).expires_at as string) > granted, "the service to write the renewal", 5_000, 10);
    const renewed = await checkFile();
    assert.ok(renewed >= granted + 1_000, `expires_at moved from ${granted} to ${renewed}`);
    const after = await stat(path);
    assert.deepEqual([after.ino, after.size], [before.ino, before.size]);
    // Python honours it: a try-once acquire is busy, naming the service's holder.
    const busy = await py.call({ op: "acquire", resource: "svc-v3", holder: "py", ttl: 5 });
    assert.equal(busy.error, "ResourceBusyError", JSON.stringify(busy));
    assert.deepEqual([busy.state?.kind, busy.state?.holder], ["held", "svc-holder"]);
  } finally {
    stream.end();
    await py.close();
    await close();
  }
});

test("a python lease with a short ttl expires: the service grants the next token once it has passed", async () => {
  await assertPythonWorks();
  const { dir, client, close } = await startServiceFixture();
  const py = PyDriver.start(dir);
  try {
    const held = await py.call({ op: "acquire", resource: "short", holder: "py-short", ttl: 0.5 });
    assert.ok(held.ok && held.lease, JSON.stringify(held));
    await assertValidLeaseFile(join(dir, "short.lock"));
    // A service waiter is granted when the Python lease expires (the service arms a timer for it),
    // never before its expires_at.
    const { lease } = await client.acquire({ resource: "short", holder: "svc-next", waitTimeout: seconds(10) });
    const grantedAt = Date.now();
    assert.ok(lease);
    assert.ok(grantedAt >= held.lease.expires_at, `granted at ${grantedAt}, before the python lease's expiry ${held.lease.expires_at}`);
    assert.equal(lease.fencingToken, held.lease.fencing_token + 1);
    // The Python holder finds its lease lost: renewal fails and release leaves the new lease alone.
    const renewed = await py.call({ op: "renew", fencing_token: held.lease.fencing_token });
    assert.equal(renewed.error, "LeaseLostError", JSON.stringify(renewed));
    const released = await py.call({ op: "release", fencing_token: held.lease.fencing_token });
    assert.equal(released.released, false);
    const document = await assertValidLeaseFile(join(dir, "short.lock"));
    assert.equal(document.holder, "svc-next");
  } finally {
    await py.close();
    await close();
  }
});
