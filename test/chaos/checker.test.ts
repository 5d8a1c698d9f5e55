// The chaos campaign's checker on hand-made histories: it must flag each kind
// of violation (or a clean campaign would prove nothing), and must not flag
// the cases the protocol documents.
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkHistories, DEFAULT_CHECK_PARAMS, type CheckInput, type ViolationKind } from "../../scripts/chaos/checker.ts";
import type { HistoryEvent, InjectorEvent, ParticipantEvent, ParticipantKind } from "../../scripts/chaos/history.ts";

const TTL = 3_000;

/** A participant's history: start, then events at the given mono times. */
class Script {
  readonly events: HistoryEvent[] = [];
  private attempt = 0;
  constructor(
    readonly who: string,
    readonly pid: number,
    kind: ParticipantKind = "grpc",
  ) {
    this.at(0, { ev: "start", kind });
  }

  at(mono: number, event: ParticipantEvent): this {
    this.events.push({ ...event, mono, wall: 1_700_000_000_000 + mono, pid: this.pid, who: this.who } as HistoryEvent);
    return this;
  }

  /** Asks at `from`, is granted `token` at `granted`, writes, releases at `released`. */
  hold(resource: string, token: number, from: number, granted: number, released: number, accepted = true): this {
    const attempt = ++this.attempt;
    this.at(from, { ev: "acquire-start", resource, attempt, waitMs: 5_000, ttlMs: TTL });
    this.at(granted, { ev: "acquire-end", resource, attempt, outcome: "granted", token, deadline: granted + TTL });
    this.at(granted + 1, { ev: "write", resource, token, id: `${this.pid}-${granted + 1}`, accepted, deadline: granted + TTL });
    this.at(released, { ev: "release-start", resource, token });
    return this.at(released + 1, { ev: "release-end", resource, token, released: true });
  }

  waitInVain(resource: string, from: number, until: number, waitMs = until - from): this {
    const attempt = ++this.attempt;
    this.at(from, { ev: "acquire-start", resource, attempt, waitMs, ttlMs: TTL });
    return this.at(until, { ev: "acquire-end", resource, attempt, outcome: "busy" });
  }
}

function injector(mono: number, event: InjectorEvent): HistoryEvent {
  return { ...event, mono, wall: 1_700_000_000_000 + mono, pid: 1, who: "injector" } as HistoryEvent;
}

function check(scripts: Script[], extra: Partial<CheckInput> & { injected?: HistoryEvent[] } = {}) {
  const events = [...scripts.flatMap((s) => s.events), ...(extra.injected ?? [])].sort((a, b) => a.mono - b.mono);
  const writes = new Map<string, string>();
  // The fenced log of the scripts' writes, in time order.
  for (const e of events) {
    if (e.ev !== "write") continue;
    const log = writes.get(e.resource) ?? "";
    writes.set(e.resource, log + JSON.stringify({ token: e.token, id: e.id }) + "\n");
  }
  return checkHistories({
    events,
    fencedLogs: extra.fencedLogs ?? writes,
    junk: extra.junk ?? [],
    crashes: extra.crashes ?? [],
    params: { ...DEFAULT_CHECK_PARAMS, ttlMs: TTL },
  });
}

function only(report: ReturnType<typeof check>, kind: ViolationKind, count = 1): void {
  const others = report.violations.filter((v) => v.kind !== kind);
  assert.deepEqual(others, [], `only ${kind} expected`);
  assert.equal(report.counts[kind], count, JSON.stringify(report.violations, null, 2));
}

test("a clean history of hand-overs and a fenced overlap has no violations", () => {
  const a = new Script("a", 101).hold("r0", 1, 0, 10, 500).hold("r0", 3, 1_200, 1_210, 1_600);
  const b = new Script("b", 102, "python-file").hold("r0", 2, 400, 510, 1_100);
  // c's lease file was deleted: it still believes it holds while d, granted later, has a higher token.
  const c = new Script("c", 103).hold("r1", 1, 0, 5, 2_000);
  const d = new Script("d", 104, "node-store").hold("r1", 2, 100, 900, 1_500);
  const report = check([a, b, c, d], {
    injected: [injector(800, { ev: "fault", fault: "delete-lease-file", target: "lock-dir", resource: "r1", endMono: 800 })],
  });
  assert.deepEqual(report.violations, []);
  assert.equal(report.grants, 5);
  assert.equal(report.overlapsResolvedByFencing, 1);
  assert.deepEqual(report.faults, { "delete-lease-file": 1 });
});

test("two holders with the same token at once: an unresolved overlap, and a token issued twice", () => {
  const a = new Script("a", 101).hold("r0", 1_002, 0, 10, 2_000);
  const b = new Script("b", 102, "python-file").hold("r0", 1_002, 50, 500, 1_000);
  const report = check([a, b]);
  assert.equal(report.counts["unresolved-overlap"], 1);
  assert.equal(report.counts["token-order"], 1);
  assert.match(report.violations.find((v) => v.kind === "token-order")!.detail, /token 1002 issued twice/);
});

test("a grant asked for after a higher token was granted, overlapping it: fencing would turn away the later holder", () => {
  // Issue 14, run 1: the file-protocol participant got 1001; the service then granted 2.
  const file = new Script("file", 201, "python-file").hold("r0", 1_001, 0, 10, 3_000);
  const client = new Script("client", 202).hold("r0", 2, 100, 200, 2_500, false);
  const report = check([file, client]);
  assert.equal(report.counts["unresolved-overlap"], 1);
  assert.equal(report.counts["token-order"], 1);
  assert.match(report.violations.find((v) => v.kind === "unresolved-overlap")!.detail, /client \(token 2, granted later\)/);
});

test("a lower token issued after a higher one, without overlap: a token-order violation only", () => {
  const a = new Script("a", 101).hold("r0", 1_001, 0, 10, 100);
  const b = new Script("b", 102).hold("r0", 3, 200, 210, 300, false);
  only(check([a, b]), "token-order");
});

test("a grant that may have been issued before another (its request started first) is not an order violation", () => {
  // b asked first but learnt of its grant late (it was stopped): the order of issue is unknown.
  const a = new Script("a", 101).hold("r0", 5, 100, 110, 200);
  const b = new Script("b", 102).hold("r0", 4, 0, 150, 160);
  assert.equal(check([a, b]).counts["token-order"], 0);
});

test("a lease lost before its confirmed expiry with no fault to explain it is flagged; a deleted lease file or a long stop excuses it", () => {
  const lose = (who: string, pid: number) =>
    new Script(who, pid)
      .at(0, { ev: "acquire-start", resource: "r0", attempt: 1, waitMs: 0, ttlMs: TTL })
      .at(10, { ev: "acquire-end", resource: "r0", attempt: 1, outcome: "granted", token: 7, deadline: 3_010 })
      .at(1_000, { ev: "renewed", resource: "r0", token: 7, deadline: 4_000 })
      .at(1_500, { ev: "lost", resource: "r0", token: 7, reason: "expired", deadline: 4_000 })
      .at(1_500, { ev: "release-start", resource: "r0", token: 7 })
      .at(1_501, { ev: "release-end", resource: "r0", token: 7, released: false });
  only(check([lose("a", 101)]), "lost-lease");

  const deleted = check([lose("a", 101)], {
    injected: [injector(1_200, { ev: "fault", fault: "delete-lease-file", target: "lock-dir", resource: "r0", endMono: 1_200 })],
  });
  assert.deepEqual(deleted.violations, []);
  assert.deepEqual(deleted.lostLeases, { total: 1, excused: 1 });

  const otherResource = check([lose("a", 101)], {
    injected: [injector(1_200, { ev: "fault", fault: "delete-lease-file", target: "lock-dir", resource: "r9", endMono: 1_200 })],
  });
  assert.equal(otherResource.counts["lost-lease"], 1);

  // The documented window: a writer stopped longer than the commit window commits late over it.
  const lateCommit = check([lose("a", 101)], {
    injected: [injector(-9_000, { ev: "fault", fault: "stop-service", target: "service", targetPid: 5, endMono: 1_400 })],
  });
  assert.deepEqual(lateCommit.violations, []);

  // Its own deadline had passed: not lost early.
  const late = new Script("b", 102)
    .at(0, { ev: "acquire-start", resource: "r0", attempt: 1, waitMs: 0, ttlMs: TTL })
    .at(10, { ev: "acquire-end", resource: "r0", attempt: 1, outcome: "granted", token: 7, deadline: 3_010 })
    .at(3_500, { ev: "lost", resource: "r0", token: 7, reason: "expired", deadline: 3_010 });
  assert.equal(check([late]).counts["lost-lease"], 0);
});

test("a waiter whose wait ran out while the resource was free is stuck; one behind holds is not", () => {
  const holder = new Script("h", 101).hold("r0", 1, 0, 10, 4_000);
  const behind = new Script("w1", 102, "python-file").waitInVain("r0", 100, 3_900);
  assert.deepEqual(check([holder, behind]).violations, []);

  const free = new Script("w2", 103, "python-file").waitInVain("r1", 100, 6_000);
  only(check([holder, free]), "stuck-waiter");

  // The same wait while the service was stopped (a guard may stay taken until stale) is explained.
  const stopped = check([holder, free], {
    injected: [injector(0, { ev: "fault", fault: "stop-service", target: "service", targetPid: 5, endMono: 1_000 })],
  });
  assert.deepEqual(stopped.violations, []);
});

test("a stopped file-protocol writer explains waits only on the resource it was working on", () => {
  const holder = new Script("h", 101).hold("r0", 1, 0, 10, 1_000);
  const writer = new Script("w", 104, "python-file").waitInVain("r1", 0, 5_000);
  const stop = injector(100, { ev: "fault", fault: "stop-file-participant", target: "py1", targetPid: 104, endMono: 4_000 });
  // It may have held r1's guard while stopped (then until stale): a wait on r1 is explained...
  const onR1 = new Script("a", 102, "node-store").waitInVain("r1", 200, 8_000);
  assert.equal(check([holder, writer, onR1], { injected: [stop] }).counts["stuck-waiter"], 0);
  // ...one on r0, free after h's release, is not. Nor does a stopped gRPC client hold any guard.
  const onR0 = new Script("b", 103, "node-store").waitInVain("r0", 200, 8_000);
  const clientStop = injector(100, { ev: "fault", fault: "stop-client", target: "grpc1", targetPid: 105, endMono: 7_000 });
  only(check([holder, writer, onR0], { injected: [stop, clientStop] }), "stuck-waiter");
});

test("an answer long after the wait ran out is a stuck waiter", () => {
  const slow = new Script("w", 102).waitInVain("r0", 0, 20_000, 1_000);
  const holder = new Script("h", 101).hold("r0", 1, 0, 5, 25_000);
  only(check([holder, slow]), "stuck-waiter");
});

test("crashes: an unexpected service exit, a participant's stack trace or exit, a service stack trace", () => {
  const crashed = new Script("a", 101).at(5, { ev: "crash", message: "TypeError: x is undefined", stack: "TypeError: x\n    at f (a.js:1:1)" });
  const report = check([crashed], {
    injected: [
      injector(10, { ev: "service-exit", servicePid: 5, code: 1, signal: null, expected: false, stderrTail: "boom" }),
      injector(20, { ev: "participant-exit", participant: "b.1", targetPid: 102, code: 1, signal: null, expected: false }),
      injector(30, { ev: "service-exit", servicePid: 6, code: null, signal: "SIGKILL", expected: true }),
      injector(40, { ev: "participant-exit", participant: "c.1", targetPid: 103, code: null, signal: "SIGKILL", expected: true }),
    ],
    crashes: ["the service printed a stack trace (service.1.stderr): Error: x\n    at y (z.js:1:1)"],
  });
  only(report, "crash", 4);
});

test("junk left in the lock dir and a fenced log that disagrees with the participants are flagged", () => {
  const a = new Script("a", 101).hold("r0", 1, 0, 10, 100);
  only(check([a], { junk: ["guard r0.lock.guard left in the lock dir with nobody inside"] }), "junk");
  // The participant recorded an accepted write; the log refused it.
  const log = `${JSON.stringify({ token: 5, id: "x" })}\n${JSON.stringify({ token: 1, id: "101-11" })}\n`;
  only(check([a], { fencedLogs: new Map([["r0", log]]) }), "fenced-mismatch");
});
