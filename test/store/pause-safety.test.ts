// Pause safety of the file protocol's write path (docs/protocol.md §4, the
// commit rule), deterministically: writer A is stalled inside its guard at
// each step of each path, its monotonic clock is moved past the guard's
// staleness, and writer B (a second store on the same dir, as a second
// service or a file-protocol participant would be) breaks A's guard as stale
// and commits meanwhile. Then A goes on. Whatever the step:
// - no fencing token is issued twice, and every token issued is above every
//   token issued before it (the counter's compare-and-swap);
// - A never commits over what B wrote, except when it was stalled after its
//   last check (the documented window), and even then tokens stay distinct
//   and the later-issued (B's) is the higher one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { LeaseGrant, LeaseRecord } from "../../src/core/lease.ts";
import { hashLeaseId } from "../../src/core/lease-id.ts";
import type { Clock, TimerHandle } from "../../src/core/clock.ts";
import { LeaseFileStore } from "../../src/store/lease-file-store.ts";
import type { AcquireOutcome } from "../../src/core/lease-store.ts";
import { readFenceToken } from "../helpers/fence.ts";
import { FaultyFileSystem, type AsyncFileSystemMethod } from "../helpers/faulty-file-system.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { withTimeout } from "../helpers/wait.ts";

const STALL_MS = 11_000; // past the guard's 10 s staleness
const TTL_MS = 10_000;

/** A monotonic clock the test moves; the wall clock is real plus an offset. */
class StallableClock implements Clock {
  private mono = 0;
  constructor(public offsetMs = 0) {}
  now(): number {
    return Date.now() + this.offsetMs;
  }
  monotonic(): number {
    return this.mono;
  }
  setTimer(): TimerHandle {
    throw new Error("stores set no timers");
  }
  stall(ms: number): void {
    this.mono += ms;
  }
}

function grantFor(id: string): LeaseGrant {
  return { holder: id, ttlMs: TTL_MS, metadata: {}, leaseIdHash: hashLeaseId(id) };
}

function grantedOf(outcome: AcquireOutcome): LeaseRecord | undefined {
  return "granted" in outcome ? outcome.granted : undefined;
}

/** Where A is held: the call of `method` on `file` (relative to the lock dir), the `nth` such call (from 1). */
interface StallPoint {
  name: string;
  method: AsyncFileSystemMethod;
  file: string;
  nth?: number;
  /** After the last check: the documented window, where A's commit may land over B's. */
  window?: boolean;
}

interface Scenario {
  path: string;
  /** Puts the dir in the state the path starts from, through B (whose clock it may set). */
  prepare(b: LeaseFileStore, bClock: StallableClock): Promise<void>;
  /** A's operation; returns the lease it was granted, if any. */
  runA(a: LeaseFileStore): Promise<LeaseRecord | undefined>;
  stalls: StallPoint[];
}

// A's operations use the real time; B acts far in the future, so whatever A
// holds has expired in B's eyes and B may legitimately take the resource.
const B_LATER_MS = 3_600_000 + 120_000;

const grantStalls = (exactlyWindow: StallPoint): StallPoint[] => [
  { name: "guard taken (before reading)", method: "readFileWithMtime", file: "r.lock" },
  { name: "token issued (before writing the temp file)", method: "writeNewFileSynced", file: "TEMP" },
  { name: "temp file written (before the checks)", method: "identity", file: "r.lock", nth: 1 },
  exactlyWindow,
];

const scenarios: Scenario[] = [
  {
    path: "grant on a free resource",
    async prepare() {},
    runA: async (a) => grantedOf(await a.acquire("r", grantFor("a"))),
    // link() refuses to replace the lease B made: no window at all.
    stalls: grantStalls({ name: "after the last check (link)", method: "link", file: "r.lock" }),
  },
  {
    path: "grant over an expired lease (reclaim and grant)",
    async prepare(b, bClock) {
      bClock.offsetMs = -3 * 3_600_000; // long expired
      await b.acquire("r", grantFor("old"));
    },
    runA: async (a) => grantedOf(await a.acquire("r", grantFor("a"))),
    stalls: grantStalls({ name: "after the last check (rename)", method: "rename", file: "r.lock", window: true }),
  },
  {
    path: "grant converting a version 1 counter (1000)",
    async prepare(b) {
      await writeFile(join(b.location, "r.lock.fence"), JSON.stringify({ version: 1, resource: "r", fencing_token: 1000 }));
    },
    runA: async (a) => grantedOf(await a.acquire("r", grantFor("a"))),
    stalls: [
      { name: "version 1 counter moved aside (before the new counter is in place)", method: "rename", file: "r.lock.fence" },
      { name: "after the last check (link)", method: "link", file: "r.lock" },
    ],
  },
  {
    path: "hand-over",
    async prepare(b) {
      await b.acquire("r", grantFor("releaser"));
    },
    runA: async (a) => (await a.handOver("r", hashLeaseId("releaser"), grantFor("a"))).granted,
    stalls: grantStalls({ name: "after the last check (rename)", method: "rename", file: "r.lock", window: true }),
  },
  {
    path: "renewal that rewrites the file",
    async prepare(b) {
      await b.acquire("r", grantFor("a"));
    },
    // A store that did not write the file (a restarted service) renews by rewriting it.
    runA: async (a) => {
      await a.renew("r", hashLeaseId("a"));
      return undefined;
    },
    stalls: [
      { name: "guard taken (before reading)", method: "readFileWithMtime", file: "r.lock" },
      // Its first stat of r.lock is the commit check (with no promise kept, no stat comes before the guard).
      { name: "temp file written (before the checks)", method: "identity", file: "r.lock", nth: 1 },
      { name: "after the last check (rename)", method: "rename", file: "r.lock", window: true },
    ],
  },
  {
    path: "release",
    async prepare(b) {
      await b.acquire("r", grantFor("a"));
    },
    runA: async (a) => {
      await a.release("r", hashLeaseId("a"));
      return undefined;
    },
    stalls: [
      { name: "guard taken (before reading)", method: "readFileWithMtime", file: "r.lock" },
      { name: "before the checks", method: "identity", file: "r.lock", nth: 1 },
      { name: "after the last check (unlink)", method: "unlink", file: "r.lock", window: true },
    ],
  },
  {
    path: "reclaim of an expired lease",
    async prepare(b, bClock) {
      bClock.offsetMs = -3 * 3_600_000; // long expired
      await b.acquire("r", grantFor("old"));
    },
    runA: async (a) => {
      await a.reclaimIfExpired("r");
      return undefined;
    },
    stalls: [
      { name: "guard taken (before reading)", method: "readFileWithMtime", file: "r.lock" },
      { name: "before the checks", method: "identity", file: "r.lock", nth: 1 },
      { name: "after the last check (unlink)", method: "unlink", file: "r.lock", window: true },
    ],
  },
];

for (const scenario of scenarios) {
  for (const stall of scenario.stalls) {
    test(`paused past the guard's staleness, ${scenario.path}, at "${stall.name}"`, async () => {
      const temp = await makeTempDir();
      try {
        const dir = temp.path;
        const fsA = new FaultyFileSystem();
        const clockA = new StallableClock();
        const warningsA: string[] = [];
        const a = new LeaseFileStore({ dir, fs: fsA, clock: clockA, onWarning: (m) => warningsA.push(m) });
        const clockB = new StallableClock();
        const b = new LeaseFileStore({ dir, clock: clockB });
        await a.open();
        await scenario.prepare(b, clockB);
        const tokensBefore = await readFenceToken(dir, "r");

        let calls = 0;
        const target = stall.file === "TEMP" ? undefined : join(dir, stall.file);
        const gate = fsA.gate(stall.method, (path) => {
          const hit = target === undefined ? path.endsWith(".tmp") && !path.includes(".lock.fence") : path === target;
          return hit && ++calls === (stall.nth ?? 1);
        });
        const running = scenario.runA(a).then(
          (lease) => ({ lease }),
          (error: unknown) => ({ error }),
        );
        await withTimeout(gate.reached, 5_000, `A reaching ${stall.name}`);
        assert.ok((await readdir(dir)).includes("r.lock.guard"), "A holds its guard while stalled");
        clockA.stall(STALL_MS);

        // B breaks A's guard (stale in its eyes) and takes the resource.
        clockB.offsetMs = B_LATER_MS;
        const bGrant = grantedOf(await b.acquire("r", grantFor("b")));
        assert.ok(bGrant, "B is granted the resource while A is stalled");
        const bFile = await readFile(join(dir, "r.lock"), "utf8");

        gate.open();
        const outcome = await withTimeout(running, 10_000, "A finishing after the stall");
        const aGrant = "lease" in outcome ? outcome.lease : undefined;

        // Tokens: unique, increasing in the order issued, above everything before.
        assert.ok(bGrant.fencingToken > tokensBefore, `B's token ${bGrant.fencingToken} above ${tokensBefore}`);
        assert.ok(bGrant.fencingToken > 1000 || !scenario.path.includes("version 1"), "never below the version 1 counter");
        if (aGrant !== undefined) {
          assert.notEqual(aGrant.fencingToken, bGrant.fencingToken, "a token issued twice");
          assert.ok(aGrant.fencingToken > tokensBefore);
        }
        const fence = await readFenceToken(dir, "r");
        assert.equal(fence, Math.max(bGrant.fencingToken, aGrant?.fencingToken ?? 0), "the counter names the last token issued");

        const now = await readFile(join(dir, "r.lock"), "utf8").catch(() => undefined);
        if (!stall.window) {
          // Outside the window A saw B's change and committed nothing over it.
          assert.equal(now, bFile, `A committed over B's lease (A: ${JSON.stringify(outcome)})`);
          if (aGrant !== undefined) assert.ok(aGrant.fencingToken > bGrant.fencingToken, "A's later grant has the higher token");
        } else if (aGrant !== undefined) {
          // The window: A's commit may have landed over B's; B's token, issued later, is the higher.
          assert.ok(aGrant.fencingToken < bGrant.fencingToken, "the later-issued token (B's) wins downstream");
        }
        assert.deepEqual(
          (await readdir(dir)).filter((e) => e.endsWith(".guard") || e.endsWith(".tmp")),
          [],
          "no guard or temp file left",
        );
      } finally {
        await temp.remove();
      }
    });
  }
}

test("a guard path that is a file, or a non-empty directory, is an error and is never removed", async () => {
  const temp = await makeTempDir();
  try {
    const b = new LeaseFileStore({ dir: temp.path, clock: new StallableClock(STALL_MS) });
    await writeFile(join(temp.path, "f.lock.guard"), "not mine");
    await assert.rejects(b.acquire("f", grantFor("x")), /not a directory/);
    assert.equal(await readFile(join(temp.path, "f.lock.guard"), "utf8"), "not mine");

    const { mkdir } = await import("node:fs/promises");
    await mkdir(join(temp.path, "d.lock.guard"));
    await writeFile(join(temp.path, "d.lock.guard", "inside"), "");
    const old = new Date(Date.now() - 60_000);
    await utimes(join(temp.path, "d.lock.guard"), old, old);
    await assert.rejects(b.acquire("d", grantFor("x")), /not empty/);
    assert.deepEqual(await readdir(join(temp.path, "d.lock.guard")), ["inside"]);
  } finally {
    await temp.remove();
  }
});
