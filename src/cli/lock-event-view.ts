import type { LockEventInfo, LockInfo } from "../client/index.ts";
import type { LockEvent, LockEventType } from "../core/lock-events.ts";
import { lockEventToJson, type LockEventJson } from "../http/lock-event-json.ts";
import { printable } from "./display-text.ts";

// What the watching commands (status --watch, wait) make of the events a
// watch yields: the set of held locks they add up to, and their JSON lines.

/** The client's event in the core's shape, so both edges share one JSON form. */
export function eventToJson(info: LockEventInfo): LockEventJson {
  const event: LockEvent = {
    // An unknown type (a newer service) keeps its name "UNKNOWN" in the JSON.
    type: info.type as LockEventType,
    resource: info.resource,
    state: info.state as LockEvent["state"],
    holder: info.holder,
    fencingToken: Number(info.fencingToken),
    acquiredAt: info.acquiredAt?.getTime(),
    expiresAt: info.expiresAt?.getTime(),
    ttlMs: info.ttl,
    waiters: info.waiters,
    time: info.time.getTime(),
  };
  if (info.previousHolder !== undefined) {
    event.previous = { holder: info.previousHolder, fencingToken: Number(info.previousFencingToken ?? 0n), acquiredAt: 0 };
  }
  return lockEventToJson(event);
}

/**
 * The held locks as the events describe them. A snapshot (HELD events)
 * replaces what was known: a re-opened watch starts over.
 */
export class LockSet {
  private readonly locks = new Map<string, LockInfo>();
  private snapshotting = true;

  apply(event: LockEventInfo): void {
    if (event.type === "SNAPSHOT_COMPLETE") {
      this.snapshotting = false;
      return;
    }
    if (event.type === "HELD" && !this.snapshotting) {
      // The first event of a re-opened watch.
      this.locks.clear();
      this.snapshotting = true;
    }
    if (event.state === "free") {
      this.locks.delete(event.resource);
      return;
    }
    if (event.acquiredAt === undefined || event.expiresAt === undefined) {
      // WAITERS_CHANGED of a free resource: nothing held to show.
      const known = this.locks.get(event.resource);
      if (known) known.waiters = event.waiters;
      return;
    }
    this.locks.set(event.resource, {
      resource: event.resource,
      holder: event.holder,
      fencingToken: event.fencingToken,
      acquiredAt: event.acquiredAt,
      expiresAt: event.expiresAt,
      ttl: event.ttl ?? 0,
      waiters: event.waiters,
      state: event.state,
      metadata: {},
    });
  }

  /** Starts a new snapshot (a re-opened watch). */
  reset(): void {
    this.locks.clear();
    this.snapshotting = true;
  }

  get(resource: string): LockInfo | undefined {
    return this.locks.get(resource);
  }

  list(): LockInfo[] {
    return [...this.locks.values()].sort((a, b) => (a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : 0));
  }
}

/** One line of the recent-events feed under the live table. */
export function describeEvent(event: LockEventInfo): string {
  const time = event.time.toISOString().slice(11, 19);
  const who = event.holder === "" ? "" : ` holder=${printable(event.holder)}`;
  const token = event.fencingToken > 0n ? ` token=${event.fencingToken}` : "";
  const previous = event.previousHolder === undefined ? "" : ` from=${printable(event.previousHolder)}`;
  return `${time} ${event.type} ${printable(event.resource)}${who}${token}${previous} waiters=${event.waiters}`;
}
