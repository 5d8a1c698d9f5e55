"""Writers paused inside the guard past its staleness (issue 14), deterministically, in one process.

Writer A is stopped at one step of one path (a hook at that step): meanwhile its monotonic clock
jumps past the 5 s commit budget, its guard is made to look stale (mtime 11 s ago) and writer B
breaks it and grants itself the resource. Then A goes on. Whatever the step, tokens are never
issued twice and each is above all issued before; A commits over the state B wrote only when it
was stopped after its last check (the window docs/protocol.md names), and then the outcome is two
holders with distinct tokens, the later-issued one higher.

The same pauses as real SIGSTOPs of another process (MCP_LOCKD_TEST_STOP_AT) are at the end.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import unittest
from unittest import mock

from mcp_lockd import LeaseLostError
from mcp_lockd import file_protocol as fp

from .helpers import LockDirTest

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # clients/python
STALL_S = fp.COMMIT_BUDGET_S + 1  # how far A's monotonic clock jumps while it is stopped
SHORT_TTL = 0.4  # A's own lease, for the paths where B may take it only once it has expired


class Stall:
    """The hook: records every issued token, and stops A once at `step` (the first hit after arm())."""

    def __init__(self, test, step, second_writer):
        self.test, self.step, self.second_writer = test, step, second_writer
        self.offset = 0.0
        self.armed = False
        self.fired = False
        self.issued = []
        self.b_grant = None
        self.b_identity = None

    def clock(self):
        return time.monotonic() + self.offset

    def __call__(self, step, resource, token):
        if step == "issued":
            self.issued.append(token)
        if not self.armed or self.fired or step != self.step:
            return
        self.fired = True
        self.offset += STALL_S
        guard = self.test.path("r.lock.guard")
        then = time.time() - fp.GUARD_STALE_MS / 1000 - 1
        os.utime(guard, (then, then))
        self.second_writer(self)


def b_grants(stall):
    """Writer B: once A's lease (if any) has expired, it breaks the stale guard and is granted R."""
    grant = fp.acquire(stall.test.dir, "r", "B", 30, wait=2 * SHORT_TTL + 1)
    stall.b_grant = grant
    stall.b_identity = fp.Identity.of(os.stat(stall.test.path("r.lock")))


# Each path: how to set it up, what A does, and where A may be stopped.
PATHS = {
    "grant-free": ("free", "grant", ("guard", "temp", "check", "issued", "commit")),
    "grant-expired": ("expired", "grant", ("guard", "temp", "check", "issued", "commit")),
    "grant-v1-counter": ("v1-counter", "grant", ("guard", "temp", "check", "issued", "commit")),
    "renew": ("a-holds", "renew", ("guard", "temp", "check", "commit")),
    "release": ("a-holds", "release", ("guard", "check", "commit")),
    "reclaim": ("expired", "reclaim", ("guard", "check", "commit")),
}


class PauseTest(LockDirTest):
    def run_case(self, path_name, step):
        setup, op, _ = PATHS[path_name]
        stall = Stall(self, step, b_grants)
        with mock.patch.object(fp, "_test_hook", stall), mock.patch.object(fp, "_clock", stall.clock):
            a_grant = None
            if setup == "expired":
                self.make_fence_dir("r", 5)
                self.write_expired("r", 5)
            elif setup == "v1-counter":
                self.write_v1_fence("r", 1000)
            elif setup == "a-holds":
                a_grant = fp.acquire(self.dir, "r", "A", SHORT_TTL)
            issued_before = list(stall.issued)
            stall.armed = True
            with self.assertLogs("mcp_lockd", "WARNING") as logs:  # A finds its guard broken
                try:
                    if op == "grant":
                        outcome = fp.try_acquire(self.dir, "r", "A", 30, {})
                    elif op == "renew":
                        outcome = fp._renew_guarded(a_grant)  # the in-place path takes no guard
                    elif op == "release":
                        outcome = fp.release(a_grant)
                    else:
                        outcome = fp.reclaim(self.dir, "r")
                except LeaseLostError as err:
                    outcome = err
            self.assertTrue(stall.fired, f"A never reached {step}")
            self.assertIn("was broken while we held it", "\n".join(logs.output))
        b = stall.b_grant
        self.assertIsNotNone(b)

        # Tokens: never twice, each above all issued before (in the order they were issued).
        issued = stall.issued
        self.assertEqual(issued, sorted(set(issued)), f"issued in this order: {issued}")
        floor = {"free": 0, "expired": 5, "v1-counter": 1000, "a-holds": max(issued_before, default=0)}[setup]
        self.assertGreater(issued[len(issued_before)], floor)
        self.assertEqual(self.fence("r"), [str(issued[-1])])
        self.assertEqual(b.fencing_token, max(issued))
        self.assert_no_junk()

        current = fp.read_state(self.dir, "r")
        if step != "commit":
            # A committed nothing over B's lease: B's file is exactly as B wrote it.
            self.assertEqual(current.identity, stall.b_identity)
            self.assertEqual(current.holder, "B")
            if op == "grant":
                self.assertIsInstance(outcome, fp.State)
                self.assertEqual((outcome.kind, outcome.holder), ("held", "B"))
            elif op == "renew":
                self.assertIsInstance(outcome, LeaseLostError)
            else:
                self.assertIs(outcome, False)
            self.assertEqual(fp.renew(b).fencing_token, b.fencing_token)  # B still holds it
            return "B kept it"

        # Stopped after its last check: the documented window.
        if op == "grant" and setup != "expired":
            # R was free when A read it: A commits with link, which fails (EEXIST). A's token is burnt.
            self.assertEqual(current.identity, stall.b_identity)
            self.assertEqual((outcome.kind, outcome.holder), ("held", "B"))
            self.assertEqual(len(issued), 2)
            return "link refused"
        if op in ("grant", "renew"):
            # A's rename lands over B's lease: two holders for a moment, with distinct tokens; B's was
            # issued later and is higher, so a fenced downstream resource turns A away once B used it.
            a_token = outcome.fencing_token
            self.assertEqual((current.holder, current.fencing_token), ("A", a_token))
            self.assertLess(a_token, b.fencing_token)
            self.assertLess(issued.index(a_token), issued.index(b.fencing_token))
        else:
            # A's unlink removed B's lease file: B is the only holder that thinks it holds R.
            self.assertIs(outcome, True)
            self.assertEqual(current.kind, "free")
        # B's next renewal finds the file not its own and reports the lease lost.
        with self.assertRaises(LeaseLostError):
            fp.renew(b)
        return "window"

    def test_every_path_and_step(self):
        outcomes = {}
        for path_name, (_, _, steps) in PATHS.items():
            for step in steps:
                with self.subTest(path=path_name, step=step):
                    self.tearDown_dir()
                    outcomes[(path_name, step)] = self.run_case(path_name, step)
        windows = sorted(k for k, v in outcomes.items() if v == "window")
        self.assertEqual(
            windows,
            [("grant-expired", "commit"), ("reclaim", "commit"), ("release", "commit"), ("renew", "commit")],
        )

    def tearDown_dir(self):
        for name in os.listdir(self.dir):
            path = self.path(name)
            if os.path.isdir(path):
                for inner in os.listdir(path):
                    os.unlink(os.path.join(path, inner))
                os.rmdir(path)
            else:
                os.unlink(path)


class InterleavedPauseTest(LockDirTest):
    def test_a_writer_resuming_while_the_guard_breaker_is_about_to_commit_does_not_commit(self):
        """A renewal stopped after writing its temp file; B breaks the guard and is itself between its
        last check and its commit when A resumes. A's view of the file is still current (B has not
        committed) and A passes no deadline of its own, so only the time check stops A: it writes
        nothing, waits for the guard B holds, and finds its lease lost."""
        offset = [0.0]
        b_at_commit, a_done = threading.Event(), threading.Event()
        b_result = {}

        def b_thread():
            b_result["grant"] = fp.acquire(self.dir, "r", "B", 30, wait=2)

        def hook(step, resource, token):
            me = threading.current_thread().name
            if me == "B" and step == "commit":
                b_at_commit.set()
                a_done.wait(0.5)  # A resumes now; B goes on after it failed its check (or, wrongly, committed)
            elif me == "A" and step == "temp" and not b_at_commit.is_set():
                offset[0] += STALL_S
                time.sleep(max(0.0, (a_grant.expires_at - fp.now_ms()) / 1000 + 0.01))  # A's lease expires
                then = time.time() - fp.GUARD_STALE_MS / 1000 - 1
                os.utime(self.path("r.lock.guard"), (then, then))
                threading.Thread(target=b_thread, name="B").start()
                self.assertTrue(b_at_commit.wait(10))

        a_grant = fp.acquire(self.dir, "r", "A", SHORT_TTL)
        threading.current_thread().name, previous = "A", threading.current_thread().name
        self.addCleanup(setattr, threading.current_thread(), "name", previous)
        with mock.patch.object(fp, "_test_hook", hook), mock.patch.object(fp, "_clock", lambda: time.monotonic() + offset[0]):
            with self.assertLogs("mcp_lockd", "WARNING"), self.assertRaises(LeaseLostError):
                fp._renew_guarded(a_grant)
            a_done.set()
            for t in threading.enumerate():
                if t.name == "B":
                    t.join(10)
        self.assertEqual(fp.read_state(self.dir, "r").holder, "B")
        self.assertEqual(b_result["grant"].fencing_token, a_grant.fencing_token + 1)
        self.assertEqual(fp.renew(b_result["grant"]).fencing_token, a_grant.fencing_token + 1)


CHILD = textwrap.dedent(
    """
    import json, sys
    from mcp_lockd import file_protocol as fp
    lock_dir = sys.argv[1]
    out = {}
    g = fp.acquire(lock_dir, "other", "child", 30)    # not stopped: another resource
    out["other"] = g.fencing_token
    outcome = fp.try_acquire(lock_dir, "r", "child", 30, {})
    out["r"] = outcome.fencing_token if isinstance(outcome, fp.Grant) else [outcome.kind, outcome.holder]
    fp.release(g)                                      # not stopped: once per process
    print(json.dumps(out))
    """
)


def process_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


class RealStopTest(LockDirTest):
    """MCP_LOCKD_TEST_STOP_AT: a real SIGSTOP of a file-protocol process at each point, while this
    process breaks its guard and takes the resource; then SIGCONT."""

    def run_child(self, point):
        env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT, "PYTHONDONTWRITEBYTECODE": "1", fp.STOP_AT_ENV: f"{point}:r"}
        child = subprocess.Popen([sys.executable, "-c", CHILD, self.dir], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: child.poll() is None and child.kill())
        deadline = time.monotonic() + 20
        while process_state(child.pid) != "T":
            self.assertIsNone(child.poll(), child.stderr.read() if child.poll() is not None else "")
            self.assertLess(time.monotonic(), deadline, "the child never stopped")
            time.sleep(0.005)
        return child

    def test_stopped_at_each_point_it_never_commits_over_the_grant_made_meanwhile(self):
        for point in ("guard", "temp", "commit"):
            with self.subTest(point=point):
                self.tearDown_dir()
                child = self.run_child(point)
                names = os.listdir(self.dir)
                self.assertIn("r.lock.guard", names)
                self.assertNotIn("r.lock", names)
                temps = [n for n in names if n.startswith(".r.") and n.endswith(".tmp")]
                self.assertEqual(len(temps), 0 if point == "guard" else 1, names)
                child_token = int(self.fence("r")[0]) if point == "commit" else None
                # It stays stopped; its guard looks stale now, and we take R.
                then = time.time() - fp.GUARD_STALE_MS / 1000 - 1
                os.utime(self.path("r.lock.guard"), (then, then))
                mine = fp.acquire(self.dir, "r", "parent", 30)
                if child_token is not None:
                    self.assertEqual(mine.fencing_token, child_token + 1)
                os.kill(child.pid, signal.SIGCONT)
                out, err = child.communicate(timeout=20)
                self.assertEqual(child.returncode, 0, err)
                result = json.loads(out)
                self.assertEqual(result["r"], ["held", "parent"])  # it started over and found us
                self.assertEqual(self.lease("r")["holder"], "parent")
                self.assertEqual(fp.renew(mine).fencing_token, mine.fencing_token)
                self.assertTrue(fp.release(mine))
                self.assert_no_junk()

    def tearDown_dir(self):
        PauseTest.tearDown_dir(self)


if __name__ == "__main__":
    unittest.main()
