import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { blockedUntil, type BlockingState, type LeaseGrant, type LeaseRecord, type ResourceState } from "../core/lease.ts";
import { MAX_TTL_MS } from "../core/limits.ts";
import { systemClock, type Clock } from "../core/clock.ts";
import { StoreFailureError } from "../core/errors.ts";
import type { AcquireOutcome, HandOverOutcome, LeaseStore } from "../core/lease-store.ts";
import { CommitConflictError } from "./commit-conflict.ts";
import { FenceCounter } from "./fence-counter.ts";
import { ABSENT, fileSystemPlacingFsyncs, sameFileAndSize, threadPoolFileSystem, type FileSystem, type OverwriteResult } from "./file-system.ts";
import { FsyncPlacement, type FsyncMode } from "./fsync-placement.ts";
import { Guard, type GuardHold } from "./guard.ts";
import { HorizonRewrites } from "./horizon-rewrites.ts";
import { LEASE_FILE_VERSION, parseLeaseFile, serializeLease, tokenOfAnyLeaseText } from "./lease-file-format.ts";
import { LockDirLayout } from "./lock-dir-layout.ts";
import { horizonFor, PromisedExpiries, type OwnLeaseFile } from "./promised-expiries.ts";
import { toStoreError } from "./store-error.ts";
import type { PauseHook } from "./stop-hook.ts";
import { TempFileSweeper } from "./temp-file-sweeper.ts";

export { GUARD_STALE_MS, COMMIT_DEADLINE_MS } from "./guard.ts";

/** Own changes remembered for the watch's echo filter (see noteOwn). */
const MAX_REMEMBERED_CHANGES = 100_000;
/**
 * How often one operation starts over after finding, right before its
 * commit, that someone changed what it read (possible only after one of its
 * steps was held up past the commit deadline): each retry reads afresh.
 */
const MAX_COMMIT_ATTEMPTS = 5;

export interface LeaseFileStoreOptions {
  dir: string;
  /**
   * Injected by tests (faults); it then also serves the writes made off the
   * event loop, which otherwise go through the thread pool (see background).
   */
  fs?: FileSystem;
  /** Where the grants' fsyncs run (fsync-placement.ts; default auto). Not used with `fs`. */
  fsync?: FsyncMode;
  /** Told when a guard is broken or a left-over file removed, and when `--fsync auto` finds the disk slow or fast again. */
  onWarning?: (message: string) => void;
  /**
   * The manager's clock: lease times, the guard's staleness and the commit
   * deadline (tests stall writers with it). Default: the system clock.
   */
  clock?: Clock;
  /** Called at the protocol's steps; tests freeze the process there (see stop-hook.ts). */
  pauseHook?: PauseHook;
}

/** One version of R.lock as read under the guard: the state, and what a commit checks it against. */
interface LeaseFileRead {
  state: ResourceState;
  /** FileSystem.identity of what was read, ABSENT when there was no file. */
  identity: string;
  /** The fencing_token in the file, whether or not the file is otherwise valid (0 if none). */
  token: number;
}

type InPlaceOutcome = { kind: "written"; identity: string } | { kind: "lost" } | { kind: "other" };

interface StoreIo {
  fs: FileSystem;
  guard: Guard;
  fence: FenceCounter;
}

/** Leases as JSON files in a directory: the file protocol of docs/protocol.md. */
export class LeaseFileStore implements LeaseStore {
  readonly location: string;
  private readonly layout: LockDirLayout;
  private readonly fs: FileSystem;
  /** Where the fsyncs of grants and hand-overs run, and how many ran where (undefined with an injected file system). */
  readonly fsyncs: FsyncPlacement | undefined;
  /** The event loop's file calls, and the thread pool's for work nobody waits for. */
  private readonly io: StoreIo;
  private readonly background: StoreIo;
  private readonly warn: (message: string) => void;
  private readonly pauseHook?: PauseHook;
  private readonly host = hostname();
  /** Identity of R.lock right after our own last change, so the watch can skip our own events. */
  private readonly ownChanges = new Map<string, string>();
  private readonly promises = new PromisedExpiries();
  private readonly sweeper: TempFileSweeper;
  private readonly horizons: HorizonRewrites;
  /** In-place rewrites running, one per resource. */
  private readonly inPlaceWrites = new Map<string, Promise<InPlaceOutcome>>();
  private readonly clock: Clock;
  private stopSweeping: (() => void) | undefined;
  private warnedOlderVersion = false;

  constructor(options: LeaseFileStoreOptions) {
    this.layout = new LockDirLayout(options.dir);
    this.location = options.dir;
    this.warn = options.onWarning ?? (() => {});
    if (options.fs !== undefined) this.fs = options.fs;
    else {
      this.fsyncs = new FsyncPlacement(options.fsync ?? "auto", (slow, averageMs) =>
        this.warn(
          `lone fsyncs now take ${averageMs.toFixed(1)} ms on average: ` +
            (slow
              ? "every fsync, and every call that changes the lock dir, runs on the thread pool, so that other requests go on meanwhile"
              : "a write alone fsyncs on the event loop again") +
            " (--fsync auto)",
        ),
      );
      this.fs = fileSystemPlacingFsyncs(this.fsyncs);
    }
    this.pauseHook = options.pauseHook;
    const clock = (this.clock = options.clock ?? systemClock);
    const ioOf = (fs: FileSystem): StoreIo => ({
      fs,
      guard: new Guard(fs, clock, this.warn, () => this.open(), options.pauseHook),
      fence: new FenceCounter(this.layout, fs),
    });
    this.io = ioOf(this.fs);
    // Writes nobody on the event loop should wait for (horizon rewrites,
    // renewals that must write, health probes) use the thread pool.
    this.background = options.fs !== undefined ? this.io : ioOf(threadPoolFileSystem);
    this.sweeper = new TempFileSweeper(this.layout, this.background.fs, clock, this.warn);
    this.horizons = new HorizonRewrites((resource, hash) => this.refreshHorizon(resource, hash), this.warn);
  }

  async open(): Promise<void> {
    try {
      await this.fs.mkdir(this.layout.dir);
    } catch (err) {
      throw toStoreError("creating the lock dir", this.layout.dir, err);
    }
  }

  /** Stops the background work: horizon rewrites not yet started, temp-file sweeps. */
  async close(): Promise<void> {
    this.horizons.close();
    this.stopSweeping?.();
    this.stopSweeping = undefined;
  }

  /** Resolves once no horizon rewrite is due or running (for tests). */
  backgroundWritesIdle(): Promise<void> {
    return this.horizons.idle();
  }

  async read(resource: string): Promise<ResourceState> {
    return (await this.readLeaseFile(resource, this.fs)).state;
  }

  /**
   * Reads R.lock without following a symbolic link. What is not a regular
   * file (a link, a directory, a socket) is unreadable, never free, and its
   * reason names the problem, never what the file says.
   */
  private async readLeaseFile(resource: string, fs: FileSystem): Promise<LeaseFileRead> {
    const path = this.layout.leaseFile(resource);
    let file: { text: string; mtimeMs: number; identity: string };
    try {
      file = await fs.readFileWithMtime(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") {
        this.promises.forget(resource);
        return { state: { kind: "free", resource }, identity: ABSENT, token: 0 };
      }
      if (code === "ELOOP" || code === "EISDIR" || code === "ENOTREG") return this.notARegularFile(resource, path, fs);
      throw toStoreError("reading the lease file", path, err);
    }
    // "absent" is the one identity that repeats: once someone else's file has
    // been seen, a later delete must not pass for the echo of our own unlink.
    if (this.ownChanges.get(resource) === ABSENT) this.ownChanges.delete(resource);
    const parsed = parseLeaseFile(file.text, resource, file.mtimeMs);
    if (typeof parsed !== "string") {
      if (parsed.version < LEASE_FILE_VERSION) this.noteOlderVersion(resource, parsed.version);
      const lease = this.promises.apply(file.identity, parsed.lease);
      return { state: { kind: "held", resource, lease }, identity: file.identity, token: parsed.lease.fencingToken };
    }
    const ownWrite = this.inPlaceWrites.get(resource);
    if (ownWrite !== undefined) {
      // Our own rewrite in place is landing, and a read can catch a file
      // half written: read it again once the write is done.
      await ownWrite.catch(() => {});
      return this.readLeaseFile(resource, fs);
    }
    this.promises.forget(resource);
    // An unreadable file's token still counts if it has one (docs/protocol.md §5, step 4).
    return { state: unreadable(resource, file.mtimeMs, parsed), identity: file.identity, token: tokenOfAnyLeaseText(file.text) ?? 0 };
  }

  /**
   * An older participant's lease file: warned about once per process, since
   * an older participant reads our version 3 files as unreadable
   * (docs/protocol.md §9). Right after an upgrade, the files the old service
   * left are such files too.
   */
  private noteOlderVersion(resource: string, version: number): void {
    if (this.warnedOlderVersion) return;
    this.warnedOlderVersion = true;
    this.warn(
      `${resource}: a version ${version} lease file; a version ${version} participant may be running, and it cannot read version ${LEASE_FILE_VERSION} lease files (it waits up to an hour for a resource whose expired file nobody reclaimed; docs/protocol.md §9)`,
    );
  }

  private async notARegularFile(resource: string, path: string, fs: FileSystem): Promise<LeaseFileRead> {
    this.promises.forget(resource);
    const found = await fs.inspect(path).catch(() => undefined);
    const what = found?.kind === "directory" ? "a directory" : found?.kind === "other" ? "a symbolic link or special file" : "not a regular file";
    const identity = await fs.identity(path).catch(() => `unknown:${this.clock.now()}`);
    return { state: unreadable(resource, found?.mtimeMs ?? this.clock.now(), `the lease path is ${what}`), identity, token: 0 };
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

  acquire(resource: string, grant: LeaseGrant): Promise<AcquireOutcome> {
    return this.guarded(resource, this.io, async (hold) => {
      const now = this.clock.now();
      const read = await this.readLeaseFile(resource, this.fs);
      const current = read.state;
      if (current.kind !== "free" && blockedUntil(current) > now) return { blocked: current };
      return { granted: await this.writeGrant(hold, resource, grant, now, read) };
    });
  }

  /**
   * Release and grant in one step: the next holder's lease file replaces the
   * releaser's by one rename, so the resource is never free in between and
   * the hand-over costs one durable write instead of an unlink plus a grant.
   */
  handOver(resource: string, leaseIdHash: string, next: LeaseGrant): Promise<HandOverOutcome> {
    return this.guarded(resource, this.io, async (hold) => {
      const now = this.clock.now();
      const read = await this.readLeaseFile(resource, this.fs);
      const current = read.state;
      if (current.kind !== "held" || current.lease.leaseIdHash !== leaseIdHash) return { released: false };
      if (current.lease.expiresAt <= now) {
        await this.removeLease(hold, resource, read.identity, this.io);
        return { released: false };
      }
      try {
        return { released: true, granted: await this.writeGrant(hold, resource, next, now, read) };
      } catch (err) {
        if (err instanceof CommitConflictError) throw err;
        // The release still happens; the next waiter gets the error from its own attempt.
        this.warn(`handing ${resource} over failed (${(err as Error).message}); releasing it instead`);
        const after = await this.readLeaseFile(resource, this.fs);
        if (after.state.kind === "held" && after.state.lease.leaseIdHash === leaseIdHash) {
          await this.removeLease(hold, resource, after.identity, this.io);
        }
        return { released: true };
      }
    });
  }

  /**
   * Issues the next fencing token (the counter's compare-and-swap) and commits
   * the new lease file over exactly what `read` saw; the guard is held.
   */
  private async writeGrant(hold: GuardHold, resource: string, grant: LeaseGrant, now: number, read: LeaseFileRead): Promise<LeaseRecord> {
    const fence = await this.io.fence.read(resource);
    if (fence.kind === "file") {
      this.warn(`${resource}: converting a version 1 fencing counter; a version 1 participant must not run beside this one (docs/protocol.md §9)`);
    }
    // The counter moves first: if we stop before the lease file, the next
    // token is still higher than any token a holder ever saw.
    // commitLease fsyncs the lock dir before the grant is answered.
    const fencingToken = await this.io.fence.advance(resource, fence, read.token, { lockDirSyncFollows: true });
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
    const identity = await this.commitLease(hold, resource, serializeLease(onDisk, now), read.identity, this.io, { token: fencingToken });
    return this.promises.wrote(identity, onDisk, now + grant.ttlMs);
  }

  /**
   * Inside the horizon of our own last write, a renewal only moves the
   * promise: the file, unchanged since (one stat says so), already says the
   * lease is held at least that long. Otherwise our own file is rewritten in
   * place with a new horizon (rewriteInPlace), and a file we did not write
   * last (after a restart, or someone else's change) is rewritten under the
   * guard.
   */
  async renew(resource: string, leaseIdHash: string): Promise<LeaseRecord | undefined> {
    for (;;) {
      const inFlight = this.inPlaceWrites.get(resource);
      if (inFlight === undefined && !this.promises.covers(resource, leaseIdHash, this.clock.now())) break;
      const identity = await this.leaseFileIdentity(resource);
      const extended = identity && this.promises.extend(resource, leaseIdHash, identity, this.clock.now());
      if (extended) {
        this.scheduleHorizonIfDue(resource, leaseIdHash);
        return extended;
      }
      if (inFlight === undefined) break;
      // Its new horizon may cover this renewal too.
      await inFlight.catch(() => {});
    }
    const now = this.clock.now();
    const own = this.promises.own(resource, leaseIdHash, now);
    if (own !== undefined) {
      const outcome = await this.rewriteInPlace(resource, own, now);
      if (outcome.kind === "lost") return undefined;
      if (outcome.kind === "written") {
        const renewed = this.promises.extend(resource, leaseIdHash, outcome.identity, now);
        if (renewed) return renewed;
      }
    }
    // A renewal that must write under the guard does so on the thread pool:
    // when the disk is slow, the renewals that need no write keep being
    // answered meanwhile.
    const io = this.background;
    return this.guarded(resource, io, async (hold) => {
      const now = this.clock.now();
      const read = await this.readLeaseFile(resource, io.fs);
      const current = read.state;
      if (!isLiveLeaseOf(current, leaseIdHash, now)) return undefined;
      const onDisk = { ...current.lease, expiresAt: horizonFor(now, current.lease.ttlMs) };
      const written = await this.commitLease(hold, resource, serializeLease(onDisk, now), read.identity, io);
      return this.promises.wrote(written, onDisk, now + current.lease.ttlMs);
    });
  }

  /** Queues a background rewrite once the lease just renewed has little headroom left (see refreshDue). */
  private scheduleHorizonIfDue(resource: string, leaseIdHash: string): void {
    if (this.promises.dueForRefresh(resource, leaseIdHash, this.clock.now()) !== undefined) this.horizons.schedule(resource, leaseIdHash);
  }

  /**
   * Pushes out the horizon of our own live lease, keeping what the holder was
   * promised, while renewals keep being answered from memory. Does nothing if
   * a rewrite of the resource is running, the file changed since our last
   * write (the next renewal then reads it) or is no longer due.
   */
  private async refreshHorizon(resource: string, leaseIdHash: string): Promise<void> {
    const now = this.clock.now();
    const due = this.promises.dueForRefresh(resource, leaseIdHash, now);
    if (due === undefined || this.inPlaceWrites.has(resource)) return;
    await this.rewriteInPlace(resource, due, now);
  }

  /**
   * Rewrites our own lease file in place with a new horizon (docs/protocol.md
   * §5, "Renew in place"): no guard, no temp file, one durable write. Only a
   * lease's holder ever writes into its file, and every other change
   * replaces or removes the name, so the write can only reach our own file.
   * It stands if the file still has its name after the write and the version
   * it overwrote had not expired by then: nobody can have judged that
   * version free. "other": the file is not as we last wrote it,
   * and nothing was written. One rewrite per resource at a time.
   */
  private rewriteInPlace(resource: string, own: OwnLeaseFile, now: number): Promise<InPlaceOutcome> {
    const path = this.layout.leaseFile(resource);
    const onDisk = { ...own.onDisk, expiresAt: horizonFor(now, own.onDisk.ttlMs) };
    const run = async (): Promise<InPlaceOutcome> => {
      let result: OverwriteResult | undefined;
      try {
        // From its write on, the file at its inode and size is ours whatever
        // its mtime, for reads and for the watch's echo (isOwnChange).
        result = await this.fs.overwriteSynced(path, own.identity, serializeLease(onDisk, now), () => this.promises.rewriting(resource, own.identity));
      } catch (err) {
        // The file keeps whichever version the disk has: both cover the promise.
        this.promises.rewriteFailed(resource);
        throw toStoreError("renewing in place", path, err);
      }
      if (result === undefined) return { kind: "other" };
      this.noteOwn(resource, result.identity);
      if (!result.linked) {
        this.promises.rewriteFailed(resource);
        return { kind: "lost" };
      }
      if (this.clock.now() >= own.onDisk.expiresAt) {
        // Too late to stand: ours, but its promise is not extended, so the
        // lease ends (and the file is reclaimed) at the promise it had.
        this.promises.rewrote(own.identity, result.identity, own.onDisk);
        return { kind: "lost" };
      }
      this.promises.rewrote(own.identity, result.identity, onDisk);
      return { kind: "written", identity: result.identity };
    };
    const running = run().finally(() => this.inPlaceWrites.delete(resource));
    this.inPlaceWrites.set(resource, running);
    return running;
  }

  release(resource: string, leaseIdHash: string): Promise<boolean> {
    return this.guarded(resource, this.io, async (hold) => {
      const now = this.clock.now();
      const read = await this.readLeaseFile(resource, this.fs);
      const current = read.state;
      if (current.kind !== "held" || current.lease.leaseIdHash !== leaseIdHash) return false;
      await this.removeLease(hold, resource, read.identity, this.io);
      return current.lease.expiresAt > now;
    });
  }

  /** See LeaseStore.forceRemove: an operator's ForceRelease, for any holder. */
  forceRemove(resource: string): Promise<BlockingState | undefined> {
    return this.guarded(resource, this.io, async (hold) => {
      const read = await this.readLeaseFile(resource, this.fs);
      if (read.state.kind === "free") return undefined;
      await this.removeKeepingToken(hold, resource, read);
      return read.state;
    });
  }

  reclaimIfExpired(resource: string): Promise<ResourceState> {
    return this.guarded(resource, this.io, async (hold) => {
      const now = this.clock.now();
      const read = await this.readLeaseFile(resource, this.fs);
      const current = read.state;
      if (current.kind === "free" || blockedUntil(current) > now) return current;
      await this.removeKeepingToken(hold, resource, read);
      return { kind: "free", resource };
    });
  }

  /**
   * Creates, fsyncs and unlinks a probe file in the lock dir: the steps every
   * write of the protocol needs. Its name starts with two dots, so it can
   * never be mistaken for a resource's temp file (resource names never start
   * with a dot); a left-over from a crash is swept like any temp file. No
   * guard is taken: the probe touches no resource. The dir is not created: a
   * missing lock dir is worth reporting.
   */
  async probeWritable(): Promise<void> {
    const path = this.layout.probeFile(randomBytes(6).toString("hex"));
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
    this.stopSweeping ??= this.sweeper.start();
    return () => {
      stopped = true;
      this.stopSweeping?.();
      this.stopSweeping = undefined;
      clearTimeout(retry);
      watcher?.close();
    };
  }

  /**
   * Commits `text` as R.lock over exactly the version `expected` that was
   * read under the guard (docs/protocol.md §4, the commit rule): written and
   * fsynced under a temp name first; right before the commit, R.lock must
   * still be that version, a grant's token must still be the last issued, and
   * the guard's deadline must not have passed. A free resource is taken with
   * link(), which fails rather than replace a lease someone made meanwhile.
   * Returns the identity of the new R.lock.
   */
  private async commitLease(
    hold: GuardHold,
    resource: string,
    text: string,
    expected: string,
    io: StoreIo,
    { token }: { token?: number } = {},
  ): Promise<string> {
    const { fs } = io;
    const path = this.layout.leaseFile(resource);
    const temp = this.layout.tempFileFor(resource, randomBytes(6).toString("hex"));
    let identity: string;
    try {
      identity = await fs.writeNewFileSynced(temp, text);
      this.pauseHook?.("temp", resource);
      await this.checkCommit(hold, resource, expected, io, token);
      this.pauseHook?.("commit", resource);
      // Noted before the call: on the thread pool the new file can be seen
      // (by the watch, by a renewal's stat) before the call's completion runs.
      // A wrong note costs at most one needless re-read (see noteOwn).
      this.noteOwn(resource, identity);
      if (expected === ABSENT) await fs.link(temp, path);
      else await fs.rename(temp, path);
    } catch (err) {
      await fs.unlink(temp).catch(() => {});
      if (err instanceof CommitConflictError) throw err;
      if ((err as NodeJS.ErrnoException).code === "EEXIST" && expected === ABSENT) {
        throw new CommitConflictError(`${path} was created by someone else`);
      }
      await this.noteOwnChange(resource);
      throw toStoreError("writing", path, err);
    }
    // The lease keeps its inode under its own name; the temp name goes.
    if (expected === ABSENT) await fs.unlink(temp).catch(() => {});
    try {
      await fs.syncDirectory(this.layout.dir);
    } catch (err) {
      // A grant that is not durable fails, and its caller never learns the
      // lease id: a file left in place would hold the resource for nobody.
      // A renewal's rewrite stays: its holder still holds the lease on the
      // promise it had, which the version before (durable) and this one both
      // cover; the renewal reports the error and extends nothing.
      if (token !== undefined) await this.removeLease(hold, resource, identity, io).catch(() => {});
      throw toStoreError("syncing the lock dir after writing", path, err);
    }
    return identity;
  }

  /**
   * Removes the lease file read under the guard, first raising the counter to
   * its token if the counter is lower (it never is, unless files were edited
   * or restored by hand): a token that may have been issued stays issued.
   */
  private async removeKeepingToken(hold: GuardHold, resource: string, read: LeaseFileRead): Promise<void> {
    const fence = await this.io.fence.read(resource);
    if (read.token > fence.token) await this.io.fence.advance(resource, fence, read.token, { exact: true });
    await this.removeLease(hold, resource, read.identity, this.io);
  }

  /** Removes R.lock if it is still exactly the version `expected` (the commit rule, for unlink). */
  private async removeLease(hold: GuardHold, resource: string, expected: string, io: StoreIo): Promise<void> {
    this.promises.forget(resource);
    const path = this.layout.leaseFile(resource);
    if (expected === ABSENT) return;
    await this.checkCommit(hold, resource, expected, io);
    this.pauseHook?.("commit", resource);
    try {
      await io.fs.unlink(path);
      this.noteOwn(resource, ABSENT);
    } catch (err) {
      await this.noteOwnChange(resource);
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw toStoreError("removing", path, err);
    }
  }

  /**
   * The checks right before a commit. The deadline is checked last, so what
   * remains between the checks and the commit is the few instructions to the
   * system call (docs/protocol.md §4, "What remains").
   */
  private async checkCommit(hold: GuardHold, resource: string, expected: string, io: StoreIo, token?: number): Promise<void> {
    const path = this.layout.leaseFile(resource);
    let now: string;
    try {
      now = await io.fs.identity(path);
    } catch (err) {
      throw toStoreError("checking the lease file before writing", path, err);
    }
    if (now !== expected) throw new CommitConflictError(`${path} changed since it was read`);
    if (token !== undefined && !(await io.fence.isStill(resource, token))) {
      throw new CommitConflictError(`a fencing token above ${token} was issued for ${resource} meanwhile`);
    }
    hold.checkDeadline();
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
    const now = await this.leaseFileIdentity(resource);
    if (now === undefined) return false;
    // During our in-place rewrite the mtime moves before we learn it.
    return now === own || (this.inPlaceWrites.has(resource) && sameFileAndSize(now, own));
  }

  /**
   * Runs a read-check-write under the resource's guard. A step that finds it
   * may not commit (CommitConflictError) committed nothing; it starts over
   * from a fresh read. With `wait: false` nothing is done when the guard is
   * busy (background work that a later renewal simply tries again).
   */
  private async guarded<T>(resource: string, io: StoreIo, work: (hold: GuardHold) => Promise<T>): Promise<T>;
  private async guarded(resource: string, io: StoreIo, work: (hold: GuardHold) => Promise<void>, options: { wait: false }): Promise<void>;
  private async guarded<T>(resource: string, io: StoreIo, work: (hold: GuardHold) => Promise<T>, options = { wait: true }): Promise<T | undefined> {
    const path = this.layout.guardDir(resource);
    for (let attempt = 1; ; attempt++) {
      const hold = await io.guard.take(path, resource, options.wait);
      if (hold === undefined) return undefined;
      const ended = this.fsyncs?.beginWrite();
      try {
        return await work(hold);
      } catch (err) {
        if (!(err instanceof CommitConflictError)) throw err;
        this.warn(`${resource}: ${err.message}; starting over`);
        if (attempt >= MAX_COMMIT_ATTEMPTS) {
          throw new StoreFailureError(`${resource} kept changing under the guard (${err.message}); gave up after ${attempt} attempts`, path);
        }
      } finally {
        ended?.();
        await hold.release().catch((err: Error) => this.warn(`releasing guard ${path} failed: ${err.message}`));
      }
    }
  }

  // One host: the queue, its counts and the lease-id lookup are the manager's.
  readonly sharedQueue = false;

  async leaveQueue(): Promise<void> {}

  queuedCount(): number {
    return 0;
  }

  async findLease(): Promise<string | undefined> {
    return undefined;
  }
}

function unreadable(resource: string, modifiedAt: number, reason: string): ResourceState {
  return { kind: "unreadable", resource, modifiedAt, blockedUntil: modifiedAt + MAX_TTL_MS, reason };
}

function isLiveLeaseOf(
  state: ResourceState,
  leaseIdHash: string,
  now: number,
): state is Extract<ResourceState, { kind: "held" }> {
  return state.kind === "held" && state.lease.leaseIdHash === leaseIdHash && state.lease.expiresAt > now;
}
