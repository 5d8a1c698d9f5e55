"""FileLock and the file protocol in temp dirs: no service involved (the node tests run both together)."""

import datetime as dt
import json
import os
import threading
import time
import unittest

from mcp_lockd import (
    CorruptFenceError,
    FileLock,
    FileLockClient,
    InvalidArgumentError,
    LeaseLostError,
    LockError,
    ResourceBusyError,
    UnavailableError,
)
from mcp_lockd import file_protocol
from mcp_lockd.lease import SAFETY_MARGIN_S

from .helpers import LockDirTest


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class FileLockTest(LockDirTest):
    def test_acquire_writes_a_valid_lease_file_and_release_removes_it(self):
        with FileLock(self.dir, "gateway", ttl=30, holder="unit", metadata={"k": "v"}) as lease:
            self.assertEqual(lease.fencing_token, 1)
            self.assertEqual((lease.resource, lease.holder, lease.ttl), ("gateway", "unit", 30.0))
            doc = read_json(self.path("gateway.lock"))
            self.assertEqual(doc["version"], 3)
            self.assertEqual(doc["resource"], "gateway")
            self.assertEqual(doc["holder"], "unit")
            self.assertEqual(doc["fencing_token"], 1)
            self.assertEqual(doc["pid"], os.getpid())
            self.assertEqual(doc["metadata"], {"k": "v"})
            self.assertNotIn("lease_id_sha256", doc)
            expires = file_protocol.parse_time(doc["expires_at"])
            acquired = file_protocol.parse_time(doc["acquired_at"])
            self.assertEqual(expires - acquired, 30_000)
            # expires_at as the lease says it is the file's, to the millisecond.
            self.assertAlmostEqual(lease.expires_at.timestamp() * 1000, expires, delta=1)
            self.assertFalse(lease.lost.is_set())
            self.assertGreater(lease.remaining(), 29)
            # No temp file is left behind; the counter is a directory naming the last token.
            self.assertEqual(sorted(os.listdir(self.dir)), ["gateway.lock", "gateway.lock.fence"])
            self.assertEqual(os.listdir(self.path("gateway.lock.fence")), ["1"])
        self.assertFalse(os.path.exists(self.path("gateway.lock")))
        self.assertTrue(lease.released)
        self.assertEqual(os.listdir(self.path("gateway.lock.fence")), ["1"])
        with FileLock(self.dir, "gateway") as again:
            self.assertEqual(again.fencing_token, 2)
            self.assertEqual(os.listdir(self.path("gateway.lock.fence")), ["2"])

    def test_busy_names_the_holder_and_its_expiry(self):
        with FileLock(self.dir, "busy", ttl=30, holder="first") as held:
            started = time.monotonic()
            with self.assertRaises(ResourceBusyError) as caught:
                FileLock(self.dir, "busy", wait=0.3).acquire()
            self.assertGreaterEqual(time.monotonic() - started, 0.3)
            err = caught.exception
            self.assertIsInstance(err, LockError)
            self.assertEqual(err.holder, "first")
            self.assertEqual(err.resource, "busy")
            self.assertAlmostEqual(err.expires_at.timestamp(), held.expires_at.timestamp(), delta=0.002)
            self.assertIn('"first"', str(err))
            with self.assertRaises(ResourceBusyError):
                FileLock(self.dir, "busy").acquire()  # wait=None: try once

    def test_a_waiter_gets_the_lock_when_the_holder_releases(self):
        holder = FileLock(self.dir, "handoff", ttl=30).acquire()
        threading.Timer(0.3, holder.release).start()
        started = time.monotonic()
        with FileLock(self.dir, "handoff", wait=10) as lease:
            waited = time.monotonic() - started
            self.assertGreaterEqual(waited, 0.25)
            self.assertLess(waited, 3)
            self.assertEqual(lease.fencing_token, holder.fencing_token + 1)

    def test_renews_in_the_background(self):
        with FileLock(self.dir, "renewed", ttl=1.2) as lease:
            first = read_json(self.path("renewed.lock"))
            first_stat = os.stat(self.path("renewed.lock"))
            time.sleep(2.6)  # more than two ttls: held only if renewed
            self.assertFalse(lease.lost.is_set())
            later = read_json(self.path("renewed.lock"))
            # Renewed in place (version 3): the same inode, the same length, nothing left beside it.
            later_stat = os.stat(self.path("renewed.lock"))
            self.assertEqual((later_stat.st_ino, later_stat.st_size), (first_stat.st_ino, first_stat.st_size))
            self.assertEqual(sorted(os.listdir(self.dir)), ["renewed.lock", "renewed.lock.fence"])
            self.assertEqual(later["acquired_at"], first["acquired_at"])
            self.assertGreater(file_protocol.parse_time(later["expires_at"]), file_protocol.parse_time(first["expires_at"]) + 1200)
            self.assertGreater(lease.expires_at, dt.datetime.now(dt.timezone.utc))

    def test_lost_when_the_lease_file_is_deleted_and_the_block_exit_says_so(self):
        with self.assertRaises(LeaseLostError) as caught:
            with FileLock(self.dir, "deleted", ttl=1.5) as lease:
                os.unlink(self.path("deleted.lock"))
                started = time.monotonic()
                self.assertTrue(lease.lost.wait(5))
                self.assertLess(time.monotonic() - started, 1.5)  # at the next renewal (ttl/3)
                self.assertEqual(lease.lost.reason, "expired")
                with self.assertRaises(LeaseLostError):
                    lease.check()
        self.assertEqual(caught.exception.reason, "expired")
        self.assertEqual(caught.exception.resource, "deleted")

    def test_lost_when_someone_else_took_the_resource(self):
        lease = FileLock(self.dir, "taken", ttl=0.9).acquire()
        doc = read_json(self.path("taken.lock"))
        doc["fencing_token"] = 99
        doc["holder"] = "intruder"
        with open(self.path("taken.lock"), "w", encoding="utf-8") as f:
            json.dump(doc, f)
        self.assertTrue(lease.lost.wait(5))
        lease.release()  # leaves the other lease alone
        self.assertEqual(read_json(self.path("taken.lock"))["holder"], "intruder")

    def test_lost_no_later_than_the_last_confirmed_expiry_when_renewals_cannot_happen(self):
        stop = threading.Event()
        lease = FileLock(self.dir, "stuck", ttl=0.9).acquire()
        # A guard held (and kept fresh) by a wedged writer, and the lease file touched so that
        # renewals cannot go in place (not what our last write left): no renewal can happen.
        while True:
            try:
                os.mkdir(self.path("stuck.lock.guard"))
                break
            except FileExistsError:  # a renewal holds it right now
                time.sleep(0.001)
        later = time.time() + 1
        os.utime(self.path("stuck.lock"), (later, later))

        def keep_fresh():
            while not stop.wait(0.1):
                os.utime(self.path("stuck.lock.guard"))

        keeper = threading.Thread(target=keep_fresh)
        keeper.start()
        try:
            self.assertTrue(lease.lost.wait(5))
            lost_at = time.time()
            confirmed_expiry = lease.expires_at.timestamp()  # the last confirmed one: lost leases are not renewed
            self.assertEqual(lease.lost.reason, "unconfirmed")
            self.assertLessEqual(lost_at, confirmed_expiry)
            self.assertGreaterEqual(lost_at, confirmed_expiry - SAFETY_MARGIN_S - 0.15)
        finally:
            stop.set()
            keeper.join()
            os.rmdir(self.path("stuck.lock.guard"))
        lease.release()
        self.assertFalse(os.path.exists(self.path("stuck.lock")))

    def test_an_exception_in_the_block_releases_and_propagates(self):
        with self.assertRaises(KeyError):
            with FileLock(self.dir, "boom"):
                raise KeyError("boom")
        self.assertFalse(os.path.exists(self.path("boom.lock")))

    def test_not_reentrant(self):
        lock = FileLock(self.dir, "once")
        with lock:
            with self.assertRaises(RuntimeError):
                lock.__enter__()

    def test_invalid_arguments(self):
        cases = [
            ({"resource": "../etc"}, "resource"),
            ({"resource": ".hidden"}, "resource"),
            ({"resource": "x" * 129}, "resource"),
            ({"ttl": 0}, "ttl"),
            ({"ttl": 3601}, "ttl"),
            ({"ttl": "30"}, "ttl"),
            ({"wait": -1}, "wait"),
            ({"holder": "h" * 257}, "holder"),
            ({"metadata": {"k": 1}}, "metadata"),
        ]
        for kwargs, field in cases:
            args = {"resource": "fine", **kwargs}
            resource = args.pop("resource")
            with self.subTest(kwargs=kwargs):
                with self.assertRaises(InvalidArgumentError) as caught:
                    FileLock(self.dir, resource, **args).acquire()
                self.assertEqual(caught.exception.field, field)
        self.assertEqual(os.listdir(self.dir), [])

    def test_a_corrupt_fence_stops_acquisition(self):
        with open(self.path("fenced.lock.fence"), "w", encoding="utf-8") as f:
            f.write('{"version":1,"resource":')
        with self.assertRaises(CorruptFenceError):
            FileLock(self.dir, "fenced").acquire()
        self.assertFalse(os.path.exists(self.path("fenced.lock")))

    def test_a_missing_lock_dir_is_created(self):
        nested = self.path("made")
        with FileLock(nested, "r") as lease:
            self.assertTrue(os.path.isfile(os.path.join(nested, "r.lock")))
            self.assertEqual(lease.fencing_token, 1)

    def test_an_unusable_lock_dir_is_unavailable(self):
        not_a_dir = self.path("file")
        open(not_a_dir, "w").close()
        with self.assertRaises(UnavailableError) as caught:
            FileLock(not_a_dir, "r").acquire()
        self.assertIn("ENOTDIR", str(caught.exception))

    def test_list_shows_held_and_unreadable_lease_files(self):
        client = FileLockClient(self.dir)
        with client.lock("alpha", holder="a", metadata={"m": "1"}) as lease:
            with open(self.path("beta.lock"), "w", encoding="utf-8") as f:
                f.write("torn")
            infos = client.list()
            self.assertEqual([i.resource for i in infos], ["alpha", "beta"])
            alpha, beta = infos
            self.assertEqual((alpha.holder, alpha.fencing_token, alpha.state, alpha.waiters), ("a", lease.fencing_token, "held", 0))
            self.assertEqual(alpha.metadata, {"m": "1"})
            self.assertEqual((beta.holder, beta.fencing_token, beta.state), ("unknown", 0, "unreadable"))
            self.assertEqual([i.resource for i in client.list("al")], ["alpha"])

    def test_the_same_shape_as_the_grpc_client(self):
        client = FileLockClient(self.dir, holder="shaped")
        lease = client.acquire("shape", ttl=5)
        try:
            for name in ("resource", "holder", "fencing_token", "expires_at", "acquired_at", "ttl", "lost", "metadata"):
                self.assertTrue(hasattr(lease, name), name)
            self.assertEqual(lease.holder, "shaped")
            self.assertNotIn("lease_id", repr(lease))
        finally:
            lease.release()
        lease.release()  # twice is fine


class ProtocolDetailsTest(unittest.TestCase):
    def test_rfc3339_times(self):
        self.assertEqual(file_protocol.parse_time("1970-01-01T00:00:01.5Z"), 1500)
        self.assertEqual(file_protocol.parse_time("1970-01-01t01:00:00+01:00"), 0)
        self.assertEqual(file_protocol.parse_time("1970-01-01T00:00:00z"), 0)
        self.assertIsNone(file_protocol.parse_time("1970-01-01T00:00:60Z"))  # no leap second (section 2)
        self.assertIsNone(file_protocol.parse_time("1970-02-30T00:00:00Z"))
        self.assertIsNone(file_protocol.parse_time("1970-01-01 00:00:00Z"))
        self.assertEqual(file_protocol.format_time(1500), "1970-01-01T00:00:01.500Z")

    def test_a_long_holder_in_a_file_does_not_make_it_unreadable(self):
        # Size limits bind writers, not readers (section 2).
        doc = {
            "version": 1, "resource": "r", "holder": "h" * 300, "acquired_at": "2026-01-01T00:00:00.000Z",
            "ttl": 30, "expires_at": "2999-01-01T00:00:00.000Z", "fencing_token": 3, "pid": 1, "hostname": "x",
        }
        now = time.time() * 1000
        state = file_protocol.classify(json.dumps(doc).encode(), "r", now, now)
        self.assertEqual(state.kind, "held")


if __name__ == "__main__":
    unittest.main()
