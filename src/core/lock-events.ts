import { InvalidArgumentError } from "./errors.ts";
import { blockedUntil, holderOf, type BlockingState, type ResourceState } from "./lease.ts";

// What happens to locks, as the manager sees it: the Watch RPC, the web
// view's live feed, metrics and debug logs all read these. An event never
// carries a lease id (nor its hash): it goes to anyone allowed to look.

export type LockEventType =
  /** The opening snapshot of a watch: the resource is held now. */
  | "HELD"
  /** The end of the opening snapshot. */
  | "SNAPSHOT_COMPLETE"
  | "ACQUIRED"
  | "RELEASED"
  | "EXPIRED"
  | "HANDED_OVER"
  /** An operator's ForceRelease ended the lease (the fields describe what ended). */
  | "FORCE_RELEASED"
  | "WAITERS_CHANGED"
  | "RENEWED";

export interface LockEvent {
  type: LockEventType;
  resource: string;
  /** "held" or "unreadable" while blocked; "free" after RELEASED or EXPIRED. */
  state: "held" | "unreadable" | "free";
  /** "" when free; "unknown" for an unreadable lease file. */
  holder: string;
  /** 0 when there is no readable lease. */
  fencingToken: number;
  /** ms since the epoch; undefined without a lease. */
  acquiredAt?: number;
  expiresAt?: number;
  ttlMs?: number;
  /** Callers waiting in the queue after the event. */
  waiters: number;
  /** When the manager saw it (ms since the epoch). */
  time: number;
  /** HANDED_OVER: the lease that ended. */
  previous?: { holder: string; fencingToken: number; acquiredAt: number };
}

export type LockEventListener = (event: LockEvent) => void;

/** The marker that ends a watch's opening snapshot. */
export function snapshotComplete(time: number): LockEvent {
  return { type: "SNAPSHOT_COMPLETE", resource: "", state: "free", holder: "", fencingToken: 0, waiters: 0, time };
}

/** Watch prefixes: a possibly partial resource name. */
const PREFIX_PATTERN = /^[A-Za-z0-9._-]{0,128}$/;

export function validatePrefix(prefix: string, field = "resource_prefix"): string {
  if (prefix.length > 128) throw new InvalidArgumentError(field, `is ${prefix.length} characters; the limit is 128`);
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new InvalidArgumentError(field, `${JSON.stringify(prefix)} may hold only letters, digits, '.', '_' and '-'`);
  }
  return prefix;
}

/** The event fields that describe a blocking state (what holds the resource). */
export function describeState(state: BlockingState): Pick<LockEvent, "state" | "holder" | "fencingToken" | "acquiredAt" | "expiresAt" | "ttlMs"> {
  if (state.kind === "held") {
    const { lease } = state;
    return {
      state: "held",
      holder: lease.holder,
      fencingToken: lease.fencingToken,
      acquiredAt: lease.acquiredAt,
      expiresAt: lease.expiresAt,
      ttlMs: lease.ttlMs,
    };
  }
  return {
    state: "unreadable",
    holder: holderOf(state),
    fencingToken: 0,
    acquiredAt: state.modifiedAt,
    expiresAt: state.blockedUntil,
    ttlMs: state.blockedUntil - state.modifiedAt,
  };
}

/** Same lease (or the same unreadable file), whatever its expiry now. */
export function sameHolding(a: BlockingState, b: BlockingState): boolean {
  if (a.kind === "held" && b.kind === "held") {
    return a.lease.fencingToken === b.lease.fencingToken && a.lease.acquiredAt === b.lease.acquiredAt;
  }
  if (a.kind === "unreadable" && b.kind === "unreadable") return a.modifiedAt === b.modifiedAt;
  return false;
}

/**
 * The events that take a resource from `previous` (undefined: free) to
 * `next`. An ending lease is EXPIRED when its time had run out, RELEASED
 * otherwise; a lease replaced by another without a free moment in between is
 * HANDED_OVER, unless the old one had expired (then EXPIRED, ACQUIRED).
 */
export function transitionEvents(previous: BlockingState | undefined, next: ResourceState, now: number, waiters: number): LockEvent[] {
  const { resource } = next;
  const ended = (state: BlockingState): LockEvent => ({
    type: blockedUntil(state) <= now ? "EXPIRED" : "RELEASED",
    resource,
    ...describeState(state),
    state: "free",
    waiters,
    time: now,
  });
  if (next.kind === "free") return previous === undefined ? [] : [ended(previous)];
  const current = { resource, ...describeState(next), waiters, time: now };
  if (previous === undefined) return [{ type: "ACQUIRED", ...current }];
  if (sameHolding(previous, next)) {
    const moved = blockedUntil(previous) !== blockedUntil(next);
    return moved ? [{ type: "RENEWED", ...current }] : [];
  }
  if (blockedUntil(previous) <= now) return [ended(previous), { type: "ACQUIRED", ...current }];
  const before = describeState(previous);
  return [
    {
      type: "HANDED_OVER",
      ...current,
      previous: { holder: before.holder, fencingToken: before.fencingToken, acquiredAt: before.acquiredAt! },
    },
  ];
}
