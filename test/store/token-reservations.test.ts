// Fencing-token reservation (src/store/token-reservations.ts, docs/protocol.md
// sections 2, 5 and 6) and the store watch's own-change echo filter, on real
// files in temp dirs and a real fs.watch.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { StoreUnavailableError } from "../../src/core/errors.ts";
import type { LeaseGrant, LeaseRecord } from "../../src/core/lease.ts";
import { hashLeaseId } from "../../src/core/lease-id.ts";
import { LeaseFileStore } from "../../src/store/lease-file-store.ts";
import type { AcquireOutcome } from "../../src/store/lease-store.ts";
import { TokenReservations } from "../../src/store/token-reservations.ts";
import { FaultyFileSystem } from "../helpers/faulty-file-system.ts";
import { assertValidLeaseFile, assertValidLockDir } from "../helpers/lease-file-schema.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { withTimeout } from "../helpers/wait.ts";

// ---------------------------------------------------------------------------
// Helpers

/** The real file system (with FaultyFileSystem's faults), recording every rename target that landed. */
class RecordingFileSystem extends FaultyFileSystem {
  readonly renamedOnto: string[] = [];
  override async rename(from: string, to: string): Promise<void> {
    await super.rename(from, to);
    this.renamedOnto.push(to);
  }
}

let nextId = 0;
function grant(overrides: Partial<LeaseGrant> = {}): LeaseGrant {
  return { holder: "svc", ttlMs: 10_000, metadata: {}, leaseIdHash: hashLeaseId(`lease-${++nextId}`), ...overrides };
}

function granted(outcome: AcquireOutcome): LeaseRecord {
  assert.ok("granted" in outcome, `expected a grant, got ${JSON.stringify(outcome)}`);
  return outcome.granted;
}

async function fenceValue(dir: string, resource: string): Promise<number> {
  const document = JSON.parse(await readFile(join(dir, `${resource}.lock.fence`), "utf8")) as Record<string, unknown>;
  assert.equal(document.version, 1);
  assert.equal(document.resource, resource);
  assert.ok(Number.isSafeInteger(document.fencing_token), JSON.stringify(document));
  return document.fencing_token as number;
}

/** Which version of a file this is: a rename over it (an atomic write) gives it a new inode. */
async function fileIdentity(path: string): Promise<string> {
  const s = await stat(path, { bigint: true });
  return `${s.ino}:${s.mtimeNs}:${s.size}`;
}

/** Grants `resource` and releases it at once; returns the token. */
async function grantAndRelease(store: LeaseFileStore, resource: string, now = Date.now()): Promise<number> {
  const g = grant();
  const lease = granted(await store.acquire(resource, g, now));
  assert.equal((await assertValidLeaseFile(join(store.location, `${resource}.lock`))).fencing_token, lease.fencingToken);
  assert.equal(await store.release(resource, g.leaseIdHash, now), true);
  return lease.fencingToken;
}

/** Writes a file the way a file-protocol participant does: a temp sibling renamed over the target. */
async function writeAtomically(path: string, text: string): Promise<void> {
  const dir = join(path, "..");
  const temp = join(dir, `.ext.${process.pid}.${++nextId}.tmp`);
  await writeFile(temp, text);
  await rename(temp, path);
}

async function writeExternalFence(dir: string, resource: string, token: number): Promise<void> {
  await writeAtomically(join(dir, `${resource}.lock.fence`), JSON.stringify({ version: 1, resource, fencing_token: token }));
}

function leaseText(resource: string, token: number, expiresAt: number, holder = "python-client"): string {
  return JSON.stringify({
    version: 1,
    resource,
    holder,
    acquired_at: new Date(expiresAt - 30_000).toISOString(),
    ttl: 30,
    expires_at: new Date(expiresAt).toISOString(),
    fencing_token: token,
    pid: 424_242,
    hostname: "elsewhere",
  });
}

/**
 * A grant of `resource` by another participant, as docs/protocol.md section 5
 * says: fence `max(F, P) + 1` first, then the lease file.
 */
async function externalGrant(dir: string, resource: string, expiresAt: number): Promise<number> {
  const token = (await fenceValue(dir, resource)) + 1;
  await writeExternalFence(dir, resource, token);
  await writeAtomically(join(dir, `${resource}.lock`), leaseText(resource, token, expiresAt));
  return token;
}

function assertStrictlyIncreasing(tokens: number[]): void {
  for (let i = 1; i < tokens.length; i++) {
    assert.ok(tokens[i]! > tokens[i - 1]!, `tokens must strictly increase: ${tokens.join(", ")}`);
  }
  assert.equal(new Set(tokens).size, tokens.length, `tokens must be unique: ${tokens.join(", ")}`);
}

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const temp = await makeTempDir();
  try {
    await body(temp.path);
  } finally {
    await temp.remove();
  }
}

// ---------------------------------------------------------------------------
// TokenReservations on its own

test("TokenReservations: a block is used while the fence holds exactly its end, and forgetting is always safe", () => {
  const tokens = new TokenReservations(3, 2);
  assert.equal(tokens.blockSize, 3);
  assert.deepEqual(tokens.next("a", 0, 0), { token: 1, reserveUpTo: 3 });
  tokens.issued("a", 1, 3);
  assert.deepEqual(tokens.next("a", 3, 0), { token: 2 });
  tokens.issued("a", 2, 3);
  assert.deepEqual(tokens.next("a", 3, 0), { token: 3 });
  tokens.issued("a", 3, 3);
  assert.deepEqual(tokens.next("a", 3, 0), { token: 4, reserveUpTo: 6 }, "an exhausted block starts a new one");
  tokens.issued("a", 4, 6);
  assert.deepEqual(tokens.next("a", 7, 0), { token: 8, reserveUpTo: 10 }, "a fence raised by someone else ends the block");
  tokens.issued("a", 8, 10);
  assert.deepEqual(tokens.next("a", 10, 9), { token: 11, reserveUpTo: 13 }, "an expired lease at or above the next token ends it");
  assert.deepEqual(tokens.next("a", 10, 8), { token: 9 }, "an expired lease below the next token does not");
  // Past maxResources (2) it forgets every block: the next grant of "a" reserves again, above the fence.
  tokens.issued("b", 1, 3);
  tokens.issued("c", 1, 3);
  assert.deepEqual(tokens.next("a", 10, 0), { token: 11, reserveUpTo: 13 });
});

// ---------------------------------------------------------------------------
// Reservation through LeaseFileStore

test("with no other writers, three grants write the fence once and take consecutive tokens", async () => {
  await withDir(async (dir) => {
    const fs = new RecordingFileSystem();
    const store = new LeaseFileStore({ dir, fs });
    const fence = join(dir, "r.lock.fence");
    const tokens: number[] = [];
    const fenceVersions: string[] = [];
    for (let i = 0; i < 3; i++) {
      tokens.push(await grantAndRelease(store, "r"));
      fenceVersions.push(await fileIdentity(fence));
      assert.ok((await fenceValue(dir, "r")) >= tokens.at(-1)!, "the fence bounds every token issued");
    }
    assert.deepEqual(tokens, [1, 2, 3]);
    assert.equal(fs.renamedOnto.filter((p) => p === fence).length, 1, "one fence write for three grants");
    assert.equal(new Set(fenceVersions).size, 1, `the fence file was rewritten: ${fenceVersions.join(" ")}`);
    // The default block is 1,000 tokens (docs/protocol.md section 2).
    assert.equal(await fenceValue(dir, "r"), 1_000);
    assert.equal(fs.renamedOnto.filter((p) => p === join(dir, "r.lock")).length, 3, "every grant wrote its lease file");
  });
});

test("tokenBlockSize sets the block; an exhausted block is followed by a new reservation", async () => {
  await withDir(async (dir) => {
    const fs = new RecordingFileSystem();
    const store = new LeaseFileStore({ dir, fs, tokenBlockSize: 3 });
    const fence = join(dir, "r.lock.fence");
    const tokens: number[] = [];
    const fences: number[] = [];
    for (let i = 0; i < 7; i++) {
      tokens.push(await grantAndRelease(store, "r"));
      fences.push(await fenceValue(dir, "r"));
    }
    assert.deepEqual(tokens, [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(fences, [3, 3, 3, 6, 6, 6, 9]);
    assert.equal(fs.renamedOnto.filter((p) => p === fence).length, 3);
  });
});

test("a block size of 1 writes the fence on every grant, and the fence equals the last token", async () => {
  await withDir(async (dir) => {
    const fs = new RecordingFileSystem();
    const store = new LeaseFileStore({ dir, fs, tokenBlockSize: 1 });
    for (let expected = 1; expected <= 3; expected++) {
      assert.equal(await grantAndRelease(store, "r"), expected);
      assert.equal(await fenceValue(dir, "r"), expected);
    }
    assert.equal(fs.renamedOnto.filter((p) => p === join(dir, "r.lock.fence")).length, 3);
  });
});

test("an external grant that raises the fence (F + 1) ends the block: the next token is above it, from a new reservation", async () => {
  await withDir(async (dir) => {
    const fs = new RecordingFileSystem();
    const store = new LeaseFileStore({ dir, fs });
    const fence = join(dir, "r.lock.fence");
    const fenceWrites = () => fs.renamedOnto.filter((p) => p === fence).length;
    const now = Date.now();

    assert.equal(await grantAndRelease(store, "r", now), 1);
    assert.equal(await fenceValue(dir, "r"), 1_000);

    // Another participant grants r (fence first: 1001), and its lease is live for a while.
    const external = await externalGrant(dir, "r", now + 30_000);
    assert.equal(external, 1_001);
    const blocked = await store.acquire("r", grant(), now);
    assert.ok("blocked" in blocked && blocked.blocked.kind === "held" && blocked.blocked.lease.fencingToken === 1_001);
    // It releases (deletes its file); the store's next grant is above its token.
    await unlink(join(dir, "r.lock"));
    const writesBefore = fenceWrites();
    const g = grant();
    const next = granted(await store.acquire("r", g, now));
    assert.equal(next.fencingToken, 1_002, "max(F, P) + 1 with F = 1001");
    assert.equal(fenceWrites(), writesBefore + 1, "the store reserved a new block");
    assert.equal(await fenceValue(dir, "r"), 1_002 + 999);
    assert.equal(await store.release("r", g.leaseIdHash, now), true);

    // The external lease might also just expire instead of being released: same rule.
    const expiring = await externalGrant(dir, "r", now + 5_000);
    assert.equal(expiring, 2_002);
    assert.ok("blocked" in (await store.acquire("r", grant(), now + 4_999)));
    const afterExpiry = granted(await store.acquire("r", grant(), now + 5_000));
    assert.equal(afterExpiry.fencingToken, 2_003);
    assert.ok((await fenceValue(dir, "r")) >= afterExpiry.fencingToken);
  });
});

test("an expired lease whose token is at or above the block's next token ends the block (a file restored by hand)", async () => {
  await withDir(async (dir) => {
    const store = new LeaseFileStore({ dir });
    const now = Date.now();
    for (const [resource, restoredToken] of [
      ["inside", 500],
      ["above", 1_500],
    ] as const) {
      assert.equal(await grantAndRelease(store, resource, now), 1);
      assert.equal(await fenceValue(dir, resource), 1_000);
      // An expired lease file with a higher token shows up without the fence being raised.
      await writeAtomically(join(dir, `${resource}.lock`), leaseText(resource, restoredToken, now - 1_000));
      const lease = granted(await store.acquire(resource, grant(), now));
      assert.ok(lease.fencingToken > restoredToken, `token ${lease.fencingToken} must be above ${restoredToken}`);
      assert.equal(lease.fencingToken, Math.max(1_000, restoredToken) + 1);
      assert.ok((await fenceValue(dir, resource)) >= lease.fencingToken);
    }
  });
});

test("a new store on the same dir (a restart) issues max(F, P) + 1: above the whole reserved block", async () => {
  await withDir(async (dir) => {
    const now = Date.now();
    const first = new LeaseFileStore({ dir });
    assert.equal(await grantAndRelease(first, "r", now), 1);
    const live = granted(await first.acquire("r", grant({ holder: "before-restart" }), now));
    assert.equal(live.fencingToken, 2);
    const fenceBefore = await fenceValue(dir, "r");
    assert.equal(fenceBefore, 1_000);

    // "Restart": a new store; the lease of the old one is live until the
    // horizon in its file (ttl + 60 s: the old store's promise died with it).
    const second = new LeaseFileStore({ dir });
    const blocked = await second.acquire("r", grant(), now + 69_999);
    assert.ok("blocked" in blocked && blocked.blocked.kind === "held" && blocked.blocked.lease.holder === "before-restart");
    const after = granted(await second.acquire("r", grant({ holder: "after-restart" }), now + 70_000));
    assert.equal(after.fencingToken, fenceBefore + 1, "max(F, P) + 1 with F = 1000, P = 2");
    assert.equal(await fenceValue(dir, "r"), after.fencingToken + 999);
    assert.equal(await second.release("r", hashLeaseId("nobody"), now + 70_000), false);
  });
});

test("two stores on one dir (two processes) alternating: each switch starts above the other's block, tokens never repeat", async () => {
  await withDir(async (dir) => {
    const a = new LeaseFileStore({ dir });
    const b = new LeaseFileStore({ dir });
    const tokens: number[] = [];
    let previous: LeaseFileStore | undefined;
    for (const store of [a, b, a, a, b, b, a]) {
      const fenceBefore = await fenceValue(dir, "r").catch(() => 0);
      const token = await grantAndRelease(store, "r");
      if (store === previous) assert.equal(token, tokens.at(-1)! + 1, "the same store, nobody in between: the next token");
      else assert.equal(token, fenceBefore + 1, "the other store wrote the fence: a new block above it");
      assert.ok((await fenceValue(dir, "r")) >= token);
      tokens.push(token);
      previous = store;
    }
    assertStrictlyIncreasing(tokens);
    assert.deepEqual(tokens, [1, 1_001, 2_001, 2_002, 3_001, 3_002, 4_001]);
  });
});

test("a failure between the fence write and the lease write never reuses the token, in the same store or after a restart", async () => {
  await withDir(async (dir) => {
    const fs = new RecordingFileSystem();
    const store = new LeaseFileStore({ dir, fs });
    const lease = join(dir, "r.lock");
    const fence = join(dir, "r.lock.fence");
    const failLeaseRename = async (): Promise<void> => {
      fs.fail("rename", "EIO", { match: (to) => to === lease });
      await assert.rejects(store.acquire("r", grant(), Date.now()), (err: unknown) => {
        assert.ok(err instanceof StoreUnavailableError, String(err));
        assert.ok(err.message.includes(lease) && err.message.includes("EIO"), err.message);
        return true;
      });
      fs.heal();
      assert.deepEqual((await readdir(dir)).sort(), ["r.lock.fence"], "no lease file, no temp file, no guard");
    };

    // 1. The first grant of the store: the fence is written (burning token 1), the lease file is not.
    await failLeaseRename();
    assert.deepEqual(fs.renamedOnto, [fence]);
    const burnt1 = 1;
    assert.ok((await fenceValue(dir, "r")) >= burnt1);
    assert.equal(await grantAndRelease(store, "r"), burnt1 + 1, "the same store goes on above the burnt token");

    // 2. A grant from memory (no fence write) fails the same way: token 3 is burnt.
    const fenceWritesBefore = fs.renamedOnto.filter((p) => p === fence).length;
    await failLeaseRename();
    assert.equal(fs.renamedOnto.filter((p) => p === fence).length, fenceWritesBefore, "this grant needed no fence write");
    const burnt2 = 3;
    const fenceAfterCrash = await fenceValue(dir, "r");
    assert.ok(fenceAfterCrash >= burnt2, "the fence already covered the token issued from memory");
    assert.equal(await grantAndRelease(store, "r"), burnt2 + 1);

    // 3. The process "crashes" after burning a token from memory; a new store must stay above it.
    await failLeaseRename();
    const burnt3 = 5;
    const restarted = new LeaseFileStore({ dir });
    const token = await grantAndRelease(restarted, "r");
    assert.ok(token > burnt3);
    assert.equal(token, (await fenceValue(dir, "r")) - 999, "a new block");
    assert.equal(token, fenceAfterCrash + 1);
    assert.equal(await assertValidLockDir(dir), 0);
  });
});

// ---------------------------------------------------------------------------
// The watch's own-change echo filter (real fs.watch)

interface WatchRecorder {
  seen: Array<string | undefined>;
  /** Resolves on the first event for `resource` from now on. */
  next(resource: string): Promise<void>;
  stop(): void;
}

function record(store: LeaseFileStore): WatchRecorder {
  const seen: Array<string | undefined> = [];
  const waiting = new Set<{ resource: string; resolve: () => void }>();
  const stop = store.watch((resource) => {
    seen.push(resource);
    for (const w of waiting) {
      if (w.resource === resource) {
        waiting.delete(w);
        w.resolve();
      }
    }
  });
  return {
    seen,
    next: (resource) => new Promise<void>((resolve) => waiting.add({ resource, resolve })),
    stop,
  };
}

/**
 * Makes an external change to another resource's lease file and waits for its
 * event: events of earlier changes have been delivered (and filtered) by then.
 */
async function barrier(dir: string, w: WatchRecorder, name: string): Promise<void> {
  const seen = w.next(name);
  await writeAtomically(join(dir, `${name}.lock`), leaseText(name, 1, Date.now() + 30_000));
  await withTimeout(seen, 10_000, `a watch event for the barrier "${name}"`);
  // The filter's decision is asynchronous; let any decision still pending finish.
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

test("the store's watch does not report its own acquire, renew and release of a resource", async () => {
  await withDir(async (dir) => {
    const store = new LeaseFileStore({ dir });
    await store.open();
    const w = record(store);
    try {
      const now = Date.now();
      const g = grant();
      granted(await store.acquire("r", g, now));
      assert.ok(await store.renew("r", g.leaseIdHash, now + 1_000));
      assert.equal(await store.release("r", g.leaseIdHash, now + 2_000), true);
      granted(await store.acquire("r", grant(), now + 3_000)); // a second grant from the same block
      await barrier(dir, w, "barrier");
      assert.deepEqual(
        w.seen.filter((resource) => resource !== "barrier"),
        [],
        `the store reported its own changes: ${JSON.stringify(w.seen)}`,
      );
    } finally {
      w.stop();
    }
  });
});

test("the store's watch reports an external write of R.lock made after its own change", async () => {
  await withDir(async (dir) => {
    const store = new LeaseFileStore({ dir });
    await store.open();
    const w = record(store);
    try {
      const now = Date.now();
      granted(await store.acquire("r", grant(), now - 60_000)); // own change; expired by now
      await barrier(dir, w, "barrier1");
      assert.ok(!w.seen.includes("r"), `own change reported: ${JSON.stringify(w.seen)}`);
      // Another participant reclaims the expired lease and grants itself r (atomic write).
      const sawR = w.next("r");
      await writeAtomically(join(dir, "r.lock"), leaseText("r", 1_001, now + 30_000));
      await withTimeout(sawR, 10_000, "a watch event for the external write of r.lock");
      // And an in-place rewrite (same inode) is reported too.
      await barrier(dir, w, "barrier2");
      const sawAgain = w.next("r");
      await writeFile(join(dir, "r.lock"), leaseText("r", 1_001, now + 60_000, "python-renewed"));
      await withTimeout(sawAgain, 10_000, "a watch event for the in-place rewrite of r.lock");
    } finally {
      w.stop();
    }
  });
});

test("the store's watch reports an external delete of R.lock the store had written", async () => {
  await withDir(async (dir) => {
    const store = new LeaseFileStore({ dir });
    await store.open();
    const w = record(store);
    try {
      granted(await store.acquire("r", grant(), Date.now()));
      await barrier(dir, w, "barrier");
      assert.ok(!w.seen.includes("r"), `own change reported: ${JSON.stringify(w.seen)}`);
      const sawR = w.next("r");
      await unlink(join(dir, "r.lock"));
      await withTimeout(sawR, 10_000, "a watch event for the external delete of r.lock");
    } finally {
      w.stop();
    }
  });
});

// The sequence of a service waiter behind a file-protocol client: the store
// released r itself earlier (its last own change left r.lock absent), another
// process then takes r and releases it by deleting its file. That delete must
// be reported, or a waiter on r is only woken by the 2 s safety rescan.
test("the store's watch reports an external delete of R.lock after its own release and an external grant", async () => {
  await withDir(async (dir) => {
    const store = new LeaseFileStore({ dir });
    await store.open();
    const w = record(store);
    try {
      assert.equal(await grantAndRelease(store, "r"), 1); // own change: r.lock absent
      await barrier(dir, w, "barrier");
      assert.ok(!w.seen.includes("r"), `own change reported: ${JSON.stringify(w.seen)}`);

      const sawGrant = w.next("r");
      const external = await externalGrant(dir, "r", Date.now() + 30_000);
      await withTimeout(sawGrant, 10_000, "a watch event for the external grant of r");
      const blocked = await store.acquire("r", grant(), Date.now());
      assert.ok("blocked" in blocked && blocked.blocked.kind === "held" && blocked.blocked.lease.fencingToken === external);

      const sawRelease = w.next("r");
      await unlink(join(dir, "r.lock"));
      await withTimeout(sawRelease, 10_000, "a watch event for the external delete (release) of r.lock");
    } finally {
      w.stop();
    }
  });
});
