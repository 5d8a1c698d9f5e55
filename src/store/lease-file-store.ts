import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { join } from "node:path";
import lockfile from "proper-lockfile";
import { StoreFailureError } from "../core/errors.ts";
import { blockedUntil, type BlockingState, type LeaseGrant, type LeaseRecord, type ResourceState } from "../core/lease.ts";
import { MAX_TTL_MS } from "../core/limits.ts";
import {
  ABSENT,
  guardFileSystem,
  nodeFileSystem,
  NotRegularFileError,
  threadPoolFileSystem,
  threadPoolGuardFileSystem,
  type FileSystem,
  type GuardFileSystem,
} from "./file-system.ts";
import { parseFence, parseLease, serializeFence, serializeLease } from "./lease-file-format.ts";
import { timeOf, type AcquireOutcome, type HandOverOutcome, type LeaseStore, type Now } from "./lease-store.ts";
import { LockDirLayout } from "./lock-dir-layout.ts";
import { horizonFor, PromisedExpiries } from "./promised-expiries.ts";
import { toStoreError } from "./store-error.ts";
import { TokenReservations } from "./token-reservations.ts";

/**
 * The guard every writer of the file protocol takes around a read-check-write
 * (docs/protocol.md, "The guard"). These numbers are part of the protocol: a
 * process using other stale/update values could break a live guard.
 */
export const GUARD_STALE_MS = 10_000;
export const GUARD_UPDATE_MS = 5_000;
// Waiting for a busy guard spans more than GUARD_STALE_MS, so a guard left by
// a crashed process is broken within one attempt instead of failing the caller.
const GUARD_WAIT_MS = 15_000;
const GUARD_BACKOFF = { firstMs: 2, factor: 1.3, maxMs: 100 };
/** Own changes remembered for the watch's echo filter (see noteOwn). */
const MAX_REMEMBERED_CHANGES = 100_000;

export interface LeaseFileStoreOptions {
  dir: string;
  /**
   * Injected by tests (faults); it then also serves the writes made off the
   * event loop, which otherwise go through the thread pool (see background).
   */
  fs?: FileSystem;
  /** Told when a guard is compromised (its directory removed or made stale under us). */
  onWarning?: (message: string) => void;
  /** Fencing tokens reserved per fence-file write (see TokenReservations). */
  tokenBlockSize?: number;
}

/** Leases as JSON files in a directory: the file protocol of docs/protocol.md. */
export class LeaseFileStore implements LeaseStore {
  readonly location: string;
  private readonly layout: LockDirLayout;
  private readonly fs: FileSystem;
  private readonly background: { fs: FileSystem; guardFs: GuardFileSystem };
  private readonly warn: (message: string) => void;
  private readonly host = hostname();
  private readonly tokens: TokenReservations;
  /** Identity of R.lock right after our own last change, so the watch can skip our own events. */
  private readonly ownChanges = new Map<string, string>();
  private readonly promises = new PromisedExpiries();

  constructor(options: LeaseFileStoreOptions) {
    this.layout = new LockDirLayout(options.dir);
    this.location = options.dir;
    this.fs = options.fs ?? nodeFileSystem;
    // Writes nobody on the event loop should wait for (horizon rewrites,
    // renewals that must write, health probes) use the thread pool.
    this.background =
      options.fs !== undefined
        ? { fs: options.fs, guardFs: guardFileSystem }
        : { fs: threadPoolFileSystem, guardFs: threadPoolGuardFileSystem };
    this.warn = options.onWarning ?? (() => {});
    this.tokens = new TokenReservations(options.tokenBlockSize);
  }

  async open(): Promise<void> {
    try {
      await this.fs.mkdir(this.layout.dir);
    } catch (err) {
      throw toStoreError("creating the lock dir", this.layout.dir, err);
    }
  }

  async read(resource: string): Promise<ResourceState> {
    const path = this.layout.leaseFile(resource);
    let file: { text: string; mtimeMs: number; identity: string };
    try {
      file = await this.fs.readFileWithMtime(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        this.promises.forget(resource);
        return { kind: "free", resource };
      }
      if (err instanceof NotRegularFileError) {
        this.promises.forget(resource);
        const reason = `the lease file is ${err.what}, which is never read or written through`;
        return { kind: "unreadable", resource, modifiedAt: err.mtimeMs, blockedUntil: err.mtimeMs + MAX_TTL_MS, reason };
      }
      throw toStoreError("reading the lease file", path, err);
    }
    // "absent" is the one identity that repeats: once someone else's file has
    // been seen, a later delete must not pass for the echo of our own unlink.
    if (this.ownChanges.get(resource) === ABSENT) this.ownChanges.delete(resource);
    const parsed = parseLease(file.text, resource, file.mtimeMs);
    if (typeof parsed !== "string") return { kind: "held", resource, lease: this.promises.apply(file.identity, parsed) };
    this.promises.forget(resource);
    return {
      kind: "unreadable",
      resource,
      modifiedAt: file.mtimeMs,
      blockedUntil: file.mtimeMs + MAX_TTL_MS,
      reason: parsed,
    };
  }

  async list(): Promise<BlockingState[]> {
    let entries: string[];
    try {
      entries = await this.fs.readdir(this.layout.dir);
    } catch (err) {
      throw toStoreError("listing the lock dir", this.layout.dir, err);
    }
    const resources = entries.flatMap((entry) => this.layout.resourceOfEntry(entry) ?? []).sort();
    const states: BlockingState[] = [];
    // Bounded parallelism: enough to hide latency, few enough descriptors.
    for (let i = 0; i < resources.length; i += 64) {
      const batch = await Promise.all(resources.slice(i, i + 64).map((r) => this.read(r)));
      for (const state of batch) if (state.kind !== "free") states.push(state);
    }
    return states;
  }

  acquire(resource: string, grant: LeaseGrant, clock: Now): Promise<AcquireOutcome> {
    return this.guarded(resource, async () => {
      const now = timeOf(clock);
      const current = await this.read(resource);
      if (current.kind !== "free" && blockedUntil(current) > now) return { blocked: current };
      const previous = current.kind === "held" ? current.lease.fencingToken : 0;
      try {
        return { granted: await this.writeGrant(resource, grant, now, previous) };
      } catch (err) {
        // The caller is told it failed and never gets the lease id, so a file
        // that did land (say the dir fsync failed) would hold the resource for
        // nobody. The old file, if any, had expired: removing it is a reclaim.
        await this.removeLease(resource).catch(() => {});
        throw err;
      }
    });
  }

  /**
   * Release and grant in one step: the next holder's lease file replaces the
   * releaser's by one rename, so the resource is never free in between and
   * the hand-over costs one durable write instead of an unlink plus a grant.
   */
  handOver(resource: string, leaseIdHash: string, next: LeaseGrant, clock: Now): Promise<HandOverOutcome> {
    return this.guarded(resource, async () => {
      const now = timeOf(clock);
      const current = await this.read(resource);
      if (current.kind !== "held" || current.lease.leaseIdHash !== leaseIdHash) return { released: false };
      if (current.lease.expiresAt <= now) {
        await this.removeLease(resource);
        return { released: false };
      }
      try {
        return { released: true, granted: await this.writeGrant(resource, next, now, current.lease.fencingToken) };
      } catch (err) {
        // The release still happens; the next waiter gets the error from its own attempt.
        this.warn(`handing ${resource} over failed (${(err as Error).message}); releasing it instead`);
        await this.removeLease(resource);
        return { released: true };
      }
    });
  }

  /** Issues the next fencing token and writes the new lease file; the guard is held. */
  private async writeGrant(resource: string, grant: LeaseGrant, now: number, previousToken: number): Promise<LeaseRecord> {
    const fence = await this.readFence(resource);
    const { token: fencingToken, reserveUpTo } = this.tokens.next(resource, fence, previousToken);
    if (reserveUpTo !== undefined) {
      // The counter is written first: if we crash before the lease file, the
      // next token is still higher than any token a holder ever saw.
      await this.writeAtomically(resource, this.layout.fenceFile(resource), serializeFence(resource, reserveUpTo));
    }
    this.tokens.issued(resource, fencingToken, reserveUpTo ?? fence);
    const onDisk: LeaseRecord = {
      resource,
      holder: grant.holder,
      fencingToken,
      acquiredAt: now,
      expiresAt: horizonFor(now, grant.ttlMs),
      ttlMs: grant.ttlMs,
      metadata: grant.metadata,
      leaseIdHash: grant.leaseIdHash,
      pid: process.pid,
      hostname: this.host,
    };
    const identity = await this.writeLease(resource, serializeLease(onDisk, now));
    return this.promises.wrote(identity, onDisk, now + grant.ttlMs);
  }

  /**
   * Inside the horizon of our own last write, a renewal only moves the
   * promise: the file, unchanged since (one stat says so), already says the
   * lease is held at least that long. Otherwise the file is rewritten with a
   * new horizon under the guard.
   */
  async renew(resource: string, leaseIdHash: string, clock: Now): Promise<LeaseRecord | undefined> {
    const identity = await this.leaseFileIdentity(resource);
    const extended = identity && this.promises.extend(resource, leaseIdHash, identity, timeOf(clock));
    if (extended) return extended;
    // A renewal that must write does so on the thread pool: when the disk is
    // slow (a burst of them after the background rewrites fell behind), the
    // renewals that need no write keep being answered meanwhile.
    const { fs, guardFs } = this.background;
    return this.guarded(
      resource,
      async () => {
        const now = timeOf(clock);
        const current = await this.read(resource);
        if (!isLiveLeaseOf(current, leaseIdHash, now)) return undefined;
        const onDisk = { ...current.lease, expiresAt: horizonFor(now, current.lease.ttlMs) };
        const written = await this.writeLease(resource, serializeLease(onDisk, now), fs);
        return this.promises.wrote(written, onDisk, now + current.lease.ttlMs);
      },
      guardFs,
    );
  }

  /** True when a renewal just found the lease's horizon due to be pushed out (see refreshHorizon). */
  horizonDue(resource: string, leaseIdHash: string, clock: Now): boolean {
    return this.promises.dueForRefresh(resource, leaseIdHash, timeOf(clock)) !== undefined;
  }

  /**
   * Rewrites our own live lease's file with a later horizon, keeping what the
   * holder was promised, on the thread pool: renewals keep being answered
   * from memory meanwhile. Does nothing if the file changed since our last
   * write (the next renewal then reads it) or is no longer due.
   */
  async refreshHorizon(resource: string, leaseIdHash: string, clock: Now): Promise<void> {
    const { fs, guardFs } = this.background;
    await this.guardedIfFree(
      resource,
      async () => {
        const now = timeOf(clock);
        const due = this.promises.dueForRefresh(resource, leaseIdHash, now);
        if (due === undefined || (await fs.identity(this.layout.leaseFile(resource))) !== due.identity) return;
        const onDisk = { ...due.onDisk, expiresAt: horizonFor(now, due.onDisk.ttlMs) };
        this.promises.rewrote(due.identity, await this.writeLease(resource, serializeLease(onDisk, now), fs), onDisk);
      },
      guardFs,
    );
  }

  release(resource: string, leaseIdHash: string, clock: Now): Promise<boolean> {
    return this.guarded(resource, async () => {
      const now = timeOf(clock);
      const current = await this.read(resource);
      if (current.kind !== "held" || current.lease.leaseIdHash !== leaseIdHash) return false;
      await this.removeLease(resource);
      return current.lease.expiresAt > now;
    });
  }

  reclaimIfExpired(resource: string, clock: Now): Promise<ResourceState> {
    return this.guarded(resource, async () => {
      const now = timeOf(clock);
      const current = await this.read(resource);
      if (current.kind === "free" || blockedUntil(current) > now) return current;
      // Keep the counter >= the token being forgotten (it already is, unless
      // the files were edited or restored by hand).
      if (current.kind === "held" && current.lease.fencingToken > (await this.readFence(resource))) {
        await this.writeAtomically(resource, this.layout.fenceFile(resource), serializeFence(resource, current.lease.fencingToken));
      }
      await this.removeLease(resource);
      return { kind: "free", resource };
    });
  }

  /** See LeaseStore.forceRemove: an operator's ForceRelease, for any holder. */
  forceRemove(resource: string): Promise<BlockingState | undefined> {
    return this.guarded(resource, async () => {
      const current = await this.read(resource);
      if (current.kind === "free") return undefined;
      if (current.kind === "held" && current.lease.fencingToken > (await this.readFence(resource))) {
        await this.writeAtomically(resource, this.layout.fenceFile(resource), serializeFence(resource, current.lease.fencingToken));
      }
      await this.removeLease(resource);
      return current;
    });
  }

  /**
   * Creates, fsyncs and unlinks a probe file in the lock dir: the steps every
   * write of the protocol needs. Named like the protocol's temp files
   * (`.health.<pid>.<random>.tmp`), so other implementations ignore it and a
   * left-over from a crash is cleaned up like any temp file. No guard is
   * taken: the probe touches no resource. The dir is not created: a missing
   * lock dir is worth reporting.
   */
  async probeWritable(): Promise<void> {
    const path = join(this.layout.dir, `.health.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
    try {
      await this.background.fs.writeNewFileSynced(path, "");
    } catch (err) {
      throw toStoreError("probing that the lock dir is writable", path, err);
    }
    try {
      await this.background.fs.unlink(path);
    } catch (err) {
      throw toStoreError("removing the probe file", path, err);
    }
  }

  watch(onChange: (resource: string | undefined) => void): () => void {
    let stopped = false;
    let watcher: { close(): void } | undefined;
    let retry: NodeJS.Timeout | undefined;
    const start = () => {
      if (stopped) return;
      try {
        watcher = this.fs.watch(
          this.layout.dir,
          (filename) => {
            if (filename === null) return onChange(undefined);
            const resource = this.layout.resourceOfEntry(filename);
            if (resource === undefined) return;
            void this.isOwnChange(resource).then((own) => {
              if (!own) onChange(resource);
            });
          },
          (err) => {
            watcher?.close();
            scheduleRestart(err);
          },
        );
        if (retryDelay > 0) this.warn(`watching ${this.layout.dir} again`);
        retryDelay = 0;
      } catch (err) {
        scheduleRestart(err as Error);
      }
    };
    // Backs off to 30 s and warns once per outage, not once per retry.
    let retryDelay = 0;
    const scheduleRestart = (err: Error) => {
      if (stopped) return;
      if (retryDelay === 0) this.warn(`cannot watch ${this.layout.dir} (${err.message}); retrying`);
      retryDelay = Math.min(Math.max(retryDelay * 2, 500), 30_000);
      retry = setTimeout(() => {
        start();
        onChange(undefined); // events were missed while not watching
      }, retryDelay);
      retry.unref();
    };
    start();
    return () => {
      stopped = true;
      clearTimeout(retry);
      watcher?.close();
    };
  }

  private async readFence(resource: string): Promise<number> {
    const path = this.layout.fenceFile(resource);
    let text: string;
    try {
      text = (await this.fs.readFileWithMtime(path)).text;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
      throw toStoreError("reading the fencing counter", path, err);
    }
    const token = parseFence(text, resource);
    // Guessing a counter could hand out a token twice: refuse instead.
    if (typeof token === "string") {
      throw new StoreFailureError(`the fencing counter ${path} is corrupt (${token}); restore it, or raise it above every token issued`, path);
    }
    return token;
  }

  /** Returns the identity of the file now at `path` (see FileSystem.identity). */
  private async writeAtomically(resource: string, path: string, data: string, fs = this.fs): Promise<string> {
    const temp = this.layout.tempFileFor(resource, randomBytes(6).toString("hex"));
    let identity: string;
    try {
      identity = await fs.writeNewFileSynced(temp, data);
      await fs.rename(temp, path);
    } catch (err) {
      await fs.unlink(temp).catch(() => {});
      throw toStoreError("writing", path, err);
    }
    try {
      await fs.syncDirectory(this.layout.dir);
    } catch (err) {
      throw toStoreError("syncing the lock dir after writing", path, err);
    }
    return identity;
  }

  // After our own change of R.lock we know its identity without another stat;
  // only a failed change leaves it uncertain enough to look.
  private async writeLease(resource: string, text: string, fs = this.fs): Promise<string> {
    try {
      const identity = await this.writeAtomically(resource, this.layout.leaseFile(resource), text, fs);
      this.noteOwn(resource, identity);
      return identity;
    } catch (err) {
      await this.noteOwnChange(resource);
      throw err;
    }
  }

  private async removeLease(resource: string): Promise<void> {
    this.promises.forget(resource);
    try {
      await this.remove(this.layout.leaseFile(resource));
      this.noteOwn(resource, ABSENT);
    } catch (err) {
      await this.noteOwnChange(resource);
      throw err;
    }
  }

  /** R.lock's identity (FileSystem.identity), or undefined when it cannot be read. */
  private leaseFileIdentity(resource: string): Promise<string | undefined> {
    return this.fs.identity(this.layout.leaseFile(resource)).catch(() => undefined);
  }

  private noteOwn(resource: string, identity: string): void {
    // Forgetting is always safe (one needless re-read of an echo): bound memory
    // for services that see ever new resource names.
    if (this.ownChanges.size >= MAX_REMEMBERED_CHANGES && !this.ownChanges.has(resource)) this.ownChanges.clear();
    this.ownChanges.set(resource, identity);
  }

  /** Remembers what R.lock looks like after our own change (see watch). */
  private async noteOwnChange(resource: string): Promise<void> {
    const identity = await this.leaseFileIdentity(resource);
    if (identity === undefined) this.ownChanges.delete(resource);
    else this.noteOwn(resource, identity);
  }

  /**
   * True when R.lock is exactly as our own last change left it: the watch
   * event is an echo of our own write or unlink, and re-reading it would only
   * slow the next operation on the resource down.
   */
  private async isOwnChange(resource: string): Promise<boolean> {
    const own = this.ownChanges.get(resource);
    if (own === undefined) return false;
    return (await this.leaseFileIdentity(resource)) === own;
  }

  private async remove(path: string): Promise<void> {
    try {
      await this.fs.unlink(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw toStoreError("removing", path, err);
    }
  }

  /** Runs a read-check-write under the resource's guard directory. */
  private async guarded<T>(resource: string, work: () => Promise<T>, guardFs = guardFileSystem): Promise<T> {
    const unlock = await this.takeGuard(resource, guardFs);
    try {
      return await work();
    } finally {
      await unlock().catch((err: Error) => this.warn(`releasing guard ${this.layout.guardDir(resource)} failed: ${err.message}`));
    }
  }

  /**
   * Runs `work` under the guard if it can be taken at once, else does
   * nothing (for background work that a later renewal simply tries again).
   * The same directory as proper-lockfile's lock, made with one mkdir and
   * removed with rmdir: held for milliseconds, it needs no mtime updates, and
   * any other taker sees it as a live guard.
   */
  private async guardedIfFree(resource: string, work: () => Promise<void>, guardFs: GuardFileSystem): Promise<void> {
    const guard = this.layout.guardDir(resource);
    const call = (method: (path: string, done: (err: NodeJS.ErrnoException | null) => void) => void) =>
      new Promise<void>((resolve, reject) => method(guard, (err) => (err ? reject(err) : resolve())));
    try {
      await call(guardFs.mkdir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") return;
      throw toStoreError("taking the guard", guard, err);
    }
    try {
      await work();
    } finally {
      await call(guardFs.rmdir).catch((err: Error) => this.warn(`releasing guard ${guard} failed: ${err.message}`));
    }
  }

  /**
   * Waits only while another process holds the guard (ELOCKED); any other
   * errno (ENOTDIR, EACCES, EROFS...) will not go away by waiting and is
   * reported at once. A lock dir removed under us is made again.
   */
  private async takeGuard(resource: string, guardFs: GuardFileSystem): Promise<() => Promise<void>> {
    const guard = this.layout.guardDir(resource);
    const giveUpAt = Date.now() + GUARD_WAIT_MS;
    let delay = GUARD_BACKOFF.firstMs;
    let recreatedDir = false;
    for (;;) {
      try {
        return await lockfile.lock(this.layout.leaseFile(resource), {
          realpath: false,
          lockfilePath: guard,
          stale: GUARD_STALE_MS,
          update: GUARD_UPDATE_MS,
          retries: 0,
          fs: guardFs,
          onCompromised: (err) => this.warn(`guard ${guard} compromised: ${err.message}`),
        });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT" && !recreatedDir) {
          recreatedDir = true;
          await this.open();
          continue;
        }
        if (code !== "ELOCKED" || Date.now() >= giveUpAt) throw toStoreError("taking the guard", guard, err);
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * GUARD_BACKOFF.factor, GUARD_BACKOFF.maxMs);
    }
  }
}

function isLiveLeaseOf(
  state: ResourceState,
  leaseIdHash: string,
  now: number,
): state is Extract<ResourceState, { kind: "held" }> {
  return state.kind === "held" && state.lease.leaseIdHash === leaseIdHash && state.lease.expiresAt > now;
}
