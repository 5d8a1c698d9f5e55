import { fencedVerdicts } from "./fenced-resource.ts";
import type { FaultKind, HistoryEvent, InjectorEvent, LossReason, ParticipantEvent, ParticipantKind, Stamped } from "./history.ts";
import { overlaps, uncoveredMs, type Window } from "./intervals.ts";

// The checker of the chaos campaign: a pure function of the merged histories
// (and what the campaign found in the lock dir at the end). What each check
// means, and which cases the protocol documents and it therefore excuses, is
// in docs/chaos.md.

export const VIOLATION_KINDS = [
  "unresolved-overlap",
  "token-order",
  "lost-lease",
  "stuck-waiter",
  "crash",
  "junk",
  "fenced-mismatch",
] as const;
export type ViolationKind = (typeof VIOLATION_KINDS)[number];

export interface Violation {
  kind: ViolationKind;
  resource?: string;
  detail: string;
}

export interface CheckParams {
  ttlMs: number;
  /** The guard's staleness (10 s): how long a guard left by a stopped or killed writer can block. */
  guardStaleMs: number;
  /** A writer stopped at least this long may commit late over a newer state (the protocol's documented window). */
  commitWindowMs: number;
  /** How much of a wait may go unexplained before the waiter counts as stuck. */
  stuckSlackMs: number;
}

export const DEFAULT_CHECK_PARAMS: Omit<CheckParams, "ttlMs"> = { guardStaleMs: 10_000, commitWindowMs: 5_000, stuckSlackMs: 3_000 };

export interface CheckInput {
  events: HistoryEvent[];
  /** The fenced resource's log per resource (fenced-resource.ts). */
  fencedLogs: Map<string, string>;
  /** What the campaign found left in the lock dir after its quiet period. */
  junk: string[];
  /** Crashes the campaign itself saw: service stack traces, no clean exit at the end, a participant that would not stop. */
  crashes: string[];
  params: CheckParams;
}

export interface CheckReport {
  grants: number;
  /** Per participant kind: grants, and acquisitions that ended in an error (not busy). */
  byKind: Partial<Record<ParticipantKind, { grants: number; errors: number }>>;
  writes: { accepted: number; refused: number };
  /** Holds that overlapped another hold of the same resource (distinct tokens: fencing resolved them). */
  overlapsResolvedByFencing: number;
  lostLeases: { total: number; excused: number };
  waits: number;
  /** Stops that lasted longer than the guard's staleness. */
  longStops: number;
  /** Stops armed on a temp file that caught their target creating one (inside the guard). */
  stopsInsideGuard: number;
  faults: Partial<Record<FaultKind, number>>;
  counts: Record<ViolationKind, number>;
  violations: Violation[];
}

type PEvent = Stamped<ParticipantEvent>;
type IEvent = Stamped<InjectorEvent>;

interface Hold {
  who: string;
  pid: number;
  kind: ParticipantKind;
  resource: string;
  token: number;
  requestStart: number;
  receipt: number;
  /** Last confirmed deadline the holder recorded. */
  deadline: number;
  lost?: { at: number; reason: LossReason; deadline: number };
  releaseStart?: number;
  releaseEnd?: number;
  /** When the holder stopped believing it holds. */
  beliefEnd: number;
  /** When the lease can last have blocked others. */
  leaseEnd: number;
}

interface Attempt {
  who: string;
  pid: number;
  kind: ParticipantKind;
  resource: string;
  start: number;
  end: number;
  waitMs: number;
  outcome: string;
  ttlMs: number;
}

const HORIZON_EXTRA = (ttlMs: number) => ttlMs + Math.max(2 * ttlMs, 60_000);

export function checkHistories(input: CheckInput): CheckReport {
  const { params } = input;
  const violations: Violation[] = [];
  const injector = input.events.filter((e): e is IEvent => isInjectorEvent(e));
  const byWho = new Map<string, PEvent[]>();
  for (const e of input.events) {
    if (isInjectorEvent(e)) continue;
    const list = byWho.get(e.who) ?? [];
    list.push(e as PEvent);
    byWho.set(e.who, list);
  }
  const lastMono = input.events.reduce((m, e) => Math.max(m, e.mono), 0);

  // --- faults: windows per process, and of the service
  const faults: Partial<Record<FaultKind, number>> = {};
  const stopsByPid = new Map<number, Window[]>();
  const deathByPid = new Map<number, number>();
  const serviceDown: Window[] = [];
  const longStops: Array<Window & { pid?: number }> = [];
  const fileFaults: Array<Window & { resource: string; fault: FaultKind }> = [];
  /** Stops of file-protocol processes: they may hold a guard meanwhile (gRPC clients never touch files). */
  const writerStops: Array<Window & { pid: number }> = [];
  let serviceDownSince: number | undefined;
  let stopsInsideGuard = 0;
  for (const e of injector) {
    if (e.ev === "fault") {
      faults[e.fault] = (faults[e.fault] ?? 0) + 1;
      if (e.detail?.startsWith("stopped as it created a temp file")) stopsInsideGuard += 1;
      const window = { from: e.mono, to: e.endMono ?? e.mono };
      if (e.fault === "stop-service" || e.fault === "kill-service") serviceDown.push(window);
      if (e.fault.startsWith("stop-") && e.targetPid !== undefined) {
        const list = stopsByPid.get(e.targetPid) ?? [];
        list.push(window);
        stopsByPid.set(e.targetPid, list);
      }
      // (A killed writer commits nothing late: only stops count.)
      if (e.fault.startsWith("stop-") && window.to - window.from >= params.commitWindowMs) {
        longStops.push({ ...window, pid: e.targetPid });
      }
      if (e.fault === "stop-file-participant" && e.targetPid !== undefined) writerStops.push({ ...window, pid: e.targetPid });
      if (e.fault === "kill-client" && e.targetPid !== undefined) setEarliest(deathByPid, e.targetPid, e.mono);
      if ((e.fault === "delete-lease-file" || e.fault === "truncate-lease-file") && e.resource !== undefined) {
        fileFaults.push({ ...window, resource: e.resource, fault: e.fault });
      }
    } else if (e.ev === "participant-exit") {
      setEarliest(deathByPid, e.targetPid, e.mono);
      if (!e.expected) {
        violations.push({ kind: "crash", detail: `participant ${e.participant} (pid ${e.targetPid}) exited unexpectedly (${e.signal ?? e.code}): ${e.stderrTail ?? ""}` });
      }
    } else if (e.ev === "service-exit") {
      if (!e.expected) {
        violations.push({ kind: "crash", detail: `the service (pid ${e.servicePid}) exited without being told to (${e.signal ?? e.code}): ${e.stderrTail ?? ""}` });
        serviceDownSince = e.mono;
      }
    } else if (e.ev === "service-serving" && serviceDownSince !== undefined) {
      serviceDown.push({ from: serviceDownSince, to: e.mono });
      serviceDownSince = undefined;
    }
  }
  if (serviceDownSince !== undefined) serviceDown.push({ from: serviceDownSince, to: lastMono });
  for (const crash of input.crashes) violations.push({ kind: "crash", detail: crash });

  // --- holds and attempts, per participant process
  const holds: Hold[] = [];
  const attempts: Attempt[] = [];
  let accepted = 0;
  let refused = 0;
  const recorded = new Map<string, Map<string, boolean>>();
  for (const [who, events] of byWho) {
    const start = events.find((e) => e.ev === "start") as Extract<PEvent, { ev: "start" }> | undefined;
    const kind: ParticipantKind = start?.kind ?? "grpc";
    const pid = events[0]!.pid;
    const death = Math.min(deathByPid.get(pid) ?? Infinity, lastMono);
    const open = new Map<number, Extract<PEvent, { ev: "acquire-start" }>>();
    let current: Hold | undefined;
    const closeHold = (hold: Hold, at: number) => {
      hold.beliefEnd = Math.min(hold.releaseStart ?? Infinity, hold.lost?.at ?? Infinity, hold.deadline, at);
    };
    for (const e of events) {
      switch (e.ev) {
        case "crash":
          violations.push({ kind: "crash", detail: `${who}: ${e.message}${e.stack ? `\n${e.stack}` : ""}` });
          break;
        case "acquire-start":
          open.set(e.attempt, e);
          break;
        case "acquire-end": {
          const begun = open.get(e.attempt);
          open.delete(e.attempt);
          if (begun) {
            attempts.push({ who, pid, kind, resource: e.resource, start: begun.mono, end: e.mono, waitMs: begun.waitMs, outcome: e.outcome, ttlMs: begun.ttlMs });
          }
          if (e.outcome === "granted" && e.token !== undefined) {
            current = {
              who,
              pid,
              kind,
              resource: e.resource,
              token: e.token,
              requestStart: begun?.mono ?? e.mono,
              receipt: e.mono,
              deadline: e.deadline ?? e.mono,
              beliefEnd: death,
              leaseEnd: death,
            };
            holds.push(current);
          }
          break;
        }
        case "renewed":
          if (current && current.token === e.token) current.deadline = Math.max(current.deadline, e.deadline);
          break;
        case "write": {
          if (current && current.token === e.token) current.deadline = Math.max(current.deadline, e.deadline);
          if (e.accepted) accepted += 1;
          else refused += 1;
          const mine = recorded.get(e.resource) ?? new Map<string, boolean>();
          mine.set(e.id, e.accepted);
          recorded.set(e.resource, mine);
          break;
        }
        case "lost":
          if (current && current.token === e.token && !current.lost) current.lost = { at: e.mono, reason: e.reason, deadline: e.deadline };
          break;
        case "release-start":
          if (current && current.token === e.token) current.releaseStart = e.mono;
          break;
        case "release-end":
          if (current && current.token === e.token) {
            current.releaseEnd = e.mono;
            closeHold(current, e.mono);
            current.leaseEnd = e.mono;
            current = undefined;
          }
          break;
      }
    }
    if (current) {
      // Killed, or still holding at the end: it believed it held until its deadline at most.
      closeHold(current, death);
      current.leaseEnd = Math.max(current.beliefEnd, current.deadline);
    }
    for (const begun of open.values()) {
      attempts.push({ who, pid, kind, resource: begun.resource, start: begun.mono, end: death, waitMs: begun.waitMs, outcome: "unanswered", ttlMs: begun.ttlMs });
    }
  }
  for (const hold of holds) hold.leaseEnd = blockingEnd(hold, serviceDown, params.ttlMs);

  const byResource = groupBy(holds, (h) => h.resource);

  // --- tokens: issued twice, or below one issued before
  for (const [resource, list] of byResource) {
    const seen = new Map<number, Hold>();
    for (const hold of list) {
      const twin = seen.get(hold.token);
      if (twin) {
        violations.push({ kind: "token-order", resource, detail: `token ${hold.token} issued twice: to ${twin.who} and to ${hold.who}` });
      } else seen.set(hold.token, hold);
    }
    const byReceipt = [...list].sort((a, b) => a.receipt - b.receipt);
    for (const later of list) {
      // Granted surely before `later` was asked for, yet with a higher token.
      const earlier = byReceipt.find((h) => h !== later && h.receipt < later.requestStart && h.token > later.token);
      if (earlier) {
        violations.push({
          kind: "token-order",
          resource,
          detail: `${later.who} was granted token ${later.token} after ${earlier.who} had been granted ${earlier.token}`,
        });
      }
    }
  }

  // --- overlapping holds of live holders: resolved by fencing only with distinct tokens, the later the higher
  let resolved = 0;
  for (const [resource, list] of byResource) {
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const a = list[i]!;
        const b = list[j]!;
        if (!overlaps({ from: a.receipt, to: a.beliefEnd }, { from: b.receipt, to: b.beliefEnd })) continue;
        const [first, second] = a.receipt <= b.receipt ? [a, b] : [b, a];
        if (a.token === b.token) {
          violations.push({ kind: "unresolved-overlap", resource, detail: `${a.who} and ${b.who} held it at once with the same token ${a.token}` });
        } else if (second.requestStart > first.receipt && second.token < first.token) {
          violations.push({
            kind: "unresolved-overlap",
            resource,
            detail: `${second.who} (token ${second.token}, granted later) overlapped ${first.who} (token ${first.token}): fencing turns away the later holder`,
          });
        } else resolved += 1;
      }
    }
  }

  // --- leases lost although renewed in time, unless a fault explains it
  let lostTotal = 0;
  let lostExcused = 0;
  for (const hold of holds) {
    if (!hold.lost || hold.lost.reason !== "expired") continue;
    lostTotal += 1;
    const at = hold.lost.at;
    if (hold.deadline <= at) continue; // its own time had run out: not lost early
    const span = { from: hold.requestStart, to: at };
    const fileFault = fileFaults.some((f) => f.resource === hold.resource && overlaps(span, { from: f.from, to: Math.max(f.to, f.from + 1) }));
    // docs/protocol.md: a writer stopped past the commit window may commit late over this lease.
    const lateCommit = longStops.some((w) => w.pid !== hold.pid && overlaps(span, w));
    if (fileFault || lateCommit) {
      lostExcused += 1;
      continue;
    }
    violations.push({
      kind: "lost-lease",
      resource: hold.resource,
      detail: `${hold.who} (token ${hold.token}) was told its lease is lost ${Math.round(hold.deadline - at)} ms before its confirmed expiry, with no fault on its lease file or long stop to explain it`,
    });
  }

  // --- stuck waiters: waits that ran out (or were never answered) while the resource was free
  // A stopped file-protocol process can only hold the guard of the resource it was working on
  // (waiting for, or holding: renewing, releasing); until stale, it blocks that one.
  const guardBlocks = new Map<string, Window[]>();
  for (const stop of writerStops) {
    const busyWith = [
      ...attempts.filter((a) => a.pid === stop.pid && a.start <= stop.from && a.end >= stop.from).map((a) => a.resource),
      ...holds.filter((h) => h.pid === stop.pid && h.receipt <= stop.from && (h.releaseEnd ?? Infinity) >= stop.from).map((h) => h.resource),
    ];
    for (const resource of new Set(busyWith)) {
      const list = guardBlocks.get(resource) ?? [];
      list.push({ from: stop.from, to: stop.to + params.guardStaleMs });
      guardBlocks.set(resource, list);
    }
  }
  const serviceBlocks = serviceDown.map((w) => ({ from: w.from, to: w.to + params.guardStaleMs }));
  let waits = 0;
  for (const attempt of attempts) {
    if (attempt.waitMs === 0 && attempt.outcome === "busy") continue;
    waits += 1;
    const span = { from: attempt.start, to: attempt.end };
    const ownStops = stopsByPid.get(attempt.pid) ?? [];
    const cover: Window[] = [...ownStops];
    for (const hold of byResource.get(attempt.resource) ?? []) {
      if (hold.pid === attempt.pid && hold.receipt >= attempt.end) continue;
      cover.push({ from: hold.receipt, to: hold.leaseEnd });
    }
    // The service stopped or down may have held any guard.
    cover.push(...serviceBlocks, ...(guardBlocks.get(attempt.resource) ?? []));
    for (const f of fileFaults) if (f.resource === attempt.resource && f.fault === "truncate-lease-file") cover.push(f);
    // Grants that may have been made for a caller that never learnt of them (killed, or the
    // service killed before answering) block until the promise, or the horizon after a restart.
    for (const other of attempts) {
      if (other.resource !== attempt.resource || other === attempt || other.kind !== "grpc") continue;
      if (other.outcome === "error" || other.outcome === "unanswered" || other.outcome === "aborted") {
        const restarted = serviceDown.some((w) => overlaps(w, { from: other.start, to: other.end + 1 }));
        cover.push({ from: other.start, to: other.end + (restarted ? HORIZON_EXTRA(other.ttlMs) : other.ttlMs + 1_000) });
      }
    }
    if (attempt.outcome === "busy" || attempt.outcome === "unanswered") {
      const free = uncoveredMs(span, cover);
      if (free > params.stuckSlackMs) {
        violations.push({
          kind: "stuck-waiter",
          resource: attempt.resource,
          detail: `${attempt.who} waited ${Math.round(attempt.end - attempt.start)} ms (wait ${attempt.waitMs} ms, ${attempt.outcome}) while the resource was free or unexplained for ${Math.round(free)} ms`,
        });
      }
    }
    if (attempt.outcome !== "unanswered") {
      // Time the waiter could not be answered in: its own stops, the service's, guards left by stopped writers.
      const delays = [...ownStops, ...serviceBlocks, ...(guardBlocks.get(attempt.resource) ?? [])];
      const excused = span.to - span.from - uncoveredMs(span, delays);
      const overdue = span.to - span.from - attempt.waitMs - excused;
      if (overdue > params.stuckSlackMs + 2_000) {
        violations.push({
          kind: "stuck-waiter",
          resource: attempt.resource,
          detail: `${attempt.who} got its answer (${attempt.outcome}) ${Math.round(overdue)} ms after its wait of ${attempt.waitMs} ms ran out`,
        });
      }
    }
  }

  // --- the fenced resource: every verdict a participant recorded is the log's
  for (const [resource, mine] of recorded) {
    const verdicts = fencedVerdicts(input.fencedLogs.get(resource) ?? "");
    let wrong = 0;
    let example = "";
    for (const [id, accepted] of mine) {
      const logged = verdicts.get(id);
      if (logged === accepted) continue;
      wrong += 1;
      example ||= `write ${id}: recorded ${accepted ? "accepted" : "refused"}, the log says ${logged === undefined ? "nothing" : logged ? "accepted" : "refused"}`;
    }
    // (A participant killed between its append and its record leaves a write in the log only: fine.)
    if (wrong > 0) violations.push({ kind: "fenced-mismatch", resource, detail: `${wrong} recorded verdicts differ from the fenced log, e.g. ${example}` });
  }

  for (const entry of input.junk) violations.push({ kind: "junk", detail: entry });

  const counts = Object.fromEntries(VIOLATION_KINDS.map((k) => [k, 0])) as Record<ViolationKind, number>;
  for (const v of violations) counts[v.kind] += 1;
  const byKind: CheckReport["byKind"] = {};
  for (const attempt of attempts) {
    const entry = (byKind[attempt.kind] ??= { grants: 0, errors: 0 });
    if (attempt.outcome === "granted") entry.grants += 1;
    if (attempt.outcome === "error") entry.errors += 1;
  }
  return {
    grants: holds.length,
    byKind,
    writes: { accepted, refused },
    overlapsResolvedByFencing: resolved,
    lostLeases: { total: lostTotal, excused: lostExcused },
    waits,
    longStops: longStops.filter((w) => w.to - w.from > params.guardStaleMs).length,
    stopsInsideGuard,
    faults,
    counts,
    violations,
  };
}

/**
 * Until when a hold's lease could keep others out (for the stuck-waiter
 * check). Released, or taken away by the store: until then. Otherwise (its
 * holder killed, timed out, or still holding at the end) it can outlive the
 * holder's belief: by up to a ttl (the service's promise trails the client's
 * view), and for a lease the service granted, until the horizon in its file
 * when the service restarted meanwhile (docs/protocol.md, "The renewal
 * horizon").
 */
function blockingEnd(hold: Hold, serviceDown: Window[], ttlMs: number): number {
  if (hold.lost?.reason === "expired") return Math.min(hold.leaseEnd, Math.max(hold.lost.at, hold.beliefEnd));
  // A file-protocol holder's release removes its file whatever it believed; a service client's only
  // while the service still counts it live.
  if (hold.releaseEnd !== undefined && (hold.kind !== "grpc" || !hold.lost)) return hold.releaseEnd;
  const restarted = serviceDown.some((w) => w.from >= hold.requestStart && w.from <= hold.deadline + ttlMs);
  const extra = hold.kind === "grpc" && restarted ? HORIZON_EXTRA(ttlMs) : ttlMs;
  return Math.max(hold.leaseEnd, hold.deadline + extra);
}

function isInjectorEvent(e: HistoryEvent): boolean {
  return (
    e.ev === "fault" || e.ev === "service-start" || e.ev === "service-serving" || e.ev === "service-exit" || e.ev === "participant-exit" || e.ev === "campaign"
  );
}

function setEarliest(map: Map<number, number>, key: number, value: number): void {
  map.set(key, Math.min(map.get(key) ?? Infinity, value));
}

function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const map = new Map<string, T[]>();
  for (const item of items) {
    const list = map.get(key(item)) ?? [];
    list.push(item);
    map.set(key(item), list);
  }
  return map;
}
