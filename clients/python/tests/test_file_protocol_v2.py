"""File protocol version 2, rule by rule, in temp dirs: readers, the fence directory, the guard,
the commit rule, temp files (all kept by version 3). The pause scenarios are in test_pauses.py;
what version 3 adds (checksum, renewal in place) in test_file_protocol_v3.py."""

import json
import os
import threading
import time
import unittest
from unittest import mock

from mcp_lockd import CorruptFenceError, GuardTimeoutError, InvalidArgumentError, LeaseLostError, UnavailableError
from mcp_lockd import file_protocol as fp

from .helpers import LockDirTest, lease_document, once_at


def classify(document, resource="r", mtime_ago_ms=0):
    now = time.time_ns() / 1e6
    text = document if isinstance(document, (bytes, str)) else json.dumps(document)
    return fp.classify(text.encode() if isinstance(text, str) else text, resource, now - mtime_ago_ms, now)


class ReaderRulesTest(unittest.TestCase):
    def test_versions_1_and_2_are_read_alike_and_others_are_unreadable(self):
        self.assertEqual(classify(lease_document("r", version=1)).kind, "held")
        self.assertEqual(classify(lease_document("r", version=2)).kind, "held")
        self.assertEqual(classify(lease_document("r", version=2.0)).kind, "held")  # 2.0 is the integer 2
        for version in (4, 0, "2", "3", True, None, 1.5):
            with self.subTest(version=version):
                self.assertEqual(classify(lease_document("r", version=version)).kind, "unreadable")

    def test_null_optional_fields_make_the_file_unreadable(self):
        for name in ("renewed_at", "metadata", "lease_id_sha256"):
            with self.subTest(field=name):
                state = classify(lease_document("r", **{name: None}))
                self.assertEqual(state.kind, "unreadable")
                self.assertIn(name, state.reason)

    def test_booleans_are_never_numbers_and_integral_floats_are_integers(self):
        for name, value in (("fencing_token", True), ("pid", False), ("ttl", True), ("version", True)):
            with self.subTest(field=name):
                self.assertEqual(classify(lease_document("r", **{name: value})).kind, "unreadable")
        state = classify(lease_document("r", fencing_token=3.0, pid=12.0))
        self.assertEqual((state.kind, state.fencing_token), ("held", 3))
        self.assertIsInstance(state.fencing_token, int)
        for token in (2.5, 0, -1, 2**53, "7"):
            with self.subTest(fencing_token=token):
                self.assertEqual(classify(lease_document("r", fencing_token=token)).kind, "unreadable")

    def test_nan_and_infinity_are_not_json(self):
        text = json.dumps(lease_document("r")).replace('"ttl": 30', '"ttl": NaN')
        self.assertIn("NaN", text)
        self.assertEqual(classify(text).kind, "unreadable")
        text = json.dumps(lease_document("r")).replace('"pid": 4242', '"pid": Infinity')
        self.assertEqual(classify(text).kind, "unreadable")

    def test_names_match_as_a_whole_string(self):
        for bad in ("gateway\n", "gateway\n.lock", "\ngateway", "a/b", ".a", "", "x" * 129, "g\u00e9"):
            with self.subTest(name=bad):
                with self.assertRaises(InvalidArgumentError):
                    fp.check_resource(bad)
        fp.check_resource("a" * 128)
        fp.check_resource("A-b_c.9")
        # The resource field is compared exactly, so a trailing newline there is a mismatch.
        document = lease_document("r")
        document["resource"] = "r\n"
        self.assertEqual(classify(document).kind, "unreadable")

    def test_date_times_are_strict(self):
        valid = {
            "2024-02-29T00:00:00Z": 1709164800000,  # a leap year
            "2000-02-29T23:59:59.999Z": 951868799999,
            "1970-01-01t00:00:00z": 0,
            "1970-01-01T00:00:00.123456789Z": 123,
            "1970-01-01T00:00:00.5+23:59": 500 - (23 * 3600 + 59 * 60) * 1000,
            "1970-01-01T01:00:00-01:00": 2 * 3600 * 1000,
            "0001-01-01T00:00:00Z": -62135596800000,
            "9999-12-31T23:59:59Z": 253402300799000,
        }
        for text, ms in valid.items():
            with self.subTest(valid=text):
                self.assertEqual(fp.parse_time(text), ms)
        invalid = [
            "2026-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",  # not a leap year
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "2026-01-01T00:00:60Z",  # no leap second
            "2026-01-01T00:00:00.1234567890Z",  # 10 fraction digits
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00+00:60",
            "2026-01-01T00:00:00+0000",
            "2026-01-01T00:00:00",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00Z\n",
            "\u0662\u0660\u0662\u0666-01-01T00:00:00Z",  # Arabic-Indic digits match \d, not [0-9]
            "+2026-01-01T00:00:00Z",
            20260101,
            None,
        ]
        for text in invalid:
            with self.subTest(invalid=text):
                self.assertIsNone(fp.parse_time(text))
                if isinstance(text, str):
                    self.assertEqual(classify(lease_document("r", expires_at=text)).kind, "unreadable")

    def test_expires_at_is_rounded_up_to_the_millisecond_and_other_times_down(self):
        self.assertEqual(fp.parse_time("1970-01-01T00:00:00.0001Z"), 0)
        self.assertEqual(fp.parse_time("1970-01-01T00:00:00.0001Z", round_up=True), 1)
        self.assertEqual(fp.parse_time("1970-01-01T00:00:00.001Z", round_up=True), 1)
        self.assertEqual(fp.parse_time("1969-12-31T23:59:59.9999Z"), -1)
        self.assertEqual(fp.parse_time("1969-12-31T23:59:59.9999Z", round_up=True), 0)
        state = classify(lease_document("r", expires_at="2999-01-01T00:00:00.000000001Z"))
        self.assertEqual(state.expires_at_ms, fp.parse_time("2999-01-01T00:00:00.001Z"))

    def test_size_limits_bind_writers_not_readers(self):
        self.assertEqual(classify(lease_document("r", holder="h" * 300)).kind, "held")


class TokensTest(LockDirTest):
    def acquire(self, resource="r", **kwargs):
        return fp.acquire(self.dir, resource, kwargs.pop("holder", "unit"), kwargs.pop("ttl", 30), **kwargs)

    def test_the_counter_is_a_directory_advanced_by_rename(self):
        tokens = []
        for _ in range(3):
            grant = self.acquire()
            tokens.append(grant.fencing_token)
            self.assertEqual(self.fence("r"), [str(grant.fencing_token)])
            self.assertEqual(self.lease("r")["version"], 3)
            self.assertTrue(fp.release(grant))
        self.assertEqual(tokens, [1, 2, 3])  # no reservations: consecutive
        self.assertTrue(os.path.isdir(self.path("r.lock.fence")))
        # A version-1 reader of the counter gets EISDIR, which v1 calls an invalid counter.
        with self.assertRaises(IsADirectoryError):
            open(self.path("r.lock.fence"), "rb")
        self.assert_no_junk()

    def test_a_version_1_counter_file_is_converted_and_its_value_kept(self):
        self.write_v1_fence("r", 1000)
        grant = self.acquire()
        self.assertEqual(grant.fencing_token, 1001)
        self.assertEqual(self.fence("r"), ["1001"])
        self.assert_no_junk()

    def test_a_conversion_stopped_after_moving_the_version_1_counter_aside_leaves_its_floor(self):
        # A converter paused between moving R.lock.fence to R.lock.fence.v1 and renaming its new
        # counter into place leaves no counter: the next writer reads the moved file as its floor.
        self.write_v1_fence("r", 1000)
        os.rename(self.path("r.lock.fence"), self.path("r.lock.fence.v1"))
        self.assertEqual(fp.read_fence(self.dir, "r").kind, "retired")
        self.assertEqual(self.acquire().fencing_token, 1001)
        self.assertEqual(self.fence("r"), ["1001"])

    def test_a_reservation_of_a_version_1_service_is_not_reused(self):
        # The v1 service reserved up to 1000 and had issued 2; its lease has expired.
        self.write_v1_fence("r", 1000)
        self.write_expired("r", 2)
        self.assertEqual(self.acquire().fencing_token, 1001)

    def test_the_token_is_above_the_counter_and_the_replaced_file(self):
        self.make_fence_dir("r", 5)
        self.write_expired("r", 9)  # only possible after hand edits; still counts
        self.assertEqual(self.acquire().fencing_token, 10)
        self.assertEqual(self.fence("r"), ["10"])

    def test_an_old_unreadable_file_still_counts_its_integer_token(self):
        self.make_fence_dir("r", 5)
        self.write_lease("r", lease_document("r", holder=None, fencing_token=40), mtime_ago_s=3_601)
        self.assertEqual(fp.read_state(self.dir, "r").kind, "old-unreadable")
        self.assertEqual(self.acquire().fencing_token, 41)
        # A token that is not an integer >= 1 does not count.
        for token in ("90", 90.5, True, 0):
            with self.subTest(token=token):
                resource = f"t{str(token).replace('.', '_')}"
                self.make_fence_dir(resource, 5)
                self.write_lease(resource, lease_document(resource, fencing_token=token), mtime_ago_s=3_601)
                self.assertEqual(self.acquire(resource).fencing_token, 6)

    def test_reclaim_raises_the_counter_to_the_forgotten_token(self):
        self.make_fence_dir("r", 3)
        self.write_expired("r", 8)
        self.assertTrue(fp.reclaim(self.dir, "r"))
        self.assertFalse(os.path.exists(self.path("r.lock")))
        self.assertEqual(self.fence("r"), ["8"])
        self.assertEqual(self.acquire().fencing_token, 9)
        self.assertFalse(fp.reclaim(self.dir, "r"))  # live: left alone

    def test_a_counter_that_cannot_be_read_stops_acquisition(self):
        def empty_dir(r):
            os.mkdir(self.path(f"{r}.lock.fence"))

        def two_files(r):
            self.make_fence_dir(r, 4)
            open(self.path(f"{r}.lock.fence/5"), "w").close()

        def leading_zero(r):
            os.mkdir(self.path(f"{r}.lock.fence"))
            open(self.path(f"{r}.lock.fence/007"), "w").close()

        def torn_v1(r):
            with open(self.path(f"{r}.lock.fence"), "w") as f:
                f.write('{"version":1,"resource":')

        def v1_of_another(r):
            self.write_v1_fence("other", 4)
            os.rename(self.path("other.lock.fence"), self.path(f"{r}.lock.fence"))

        def symlink(r):
            self.make_fence_dir("target", 3)
            os.symlink(self.path("target.lock.fence"), self.path(f"{r}.lock.fence"))

        for make in (empty_dir, two_files, leading_zero, torn_v1, v1_of_another, symlink):
            with self.subTest(case=make.__name__):
                resource = make.__name__.replace("_", "-")
                make(resource)
                with self.assertRaises(CorruptFenceError):
                    self.acquire(resource)
                self.assertFalse(os.path.exists(self.path(f"{resource}.lock")))
        self.assert_no_junk()

    def test_a_writer_with_a_stale_view_of_the_counter_starts_over(self):
        self.make_fence_dir("r", 1)
        # Another writer (ignoring our guard) issues 2 between our read and our rename.
        hook = once_at("check", lambda _: os.rename(self.path("r.lock.fence/1"), self.path("r.lock.fence/2")))
        with mock.patch.object(fp, "_test_hook", hook):
            grant = self.acquire()
        self.assertEqual(grant.fencing_token, 3)
        self.assertEqual(self.fence("r"), ["3"])
        self.assert_no_junk()

    def test_a_grant_whose_token_was_overtaken_before_the_commit_starts_over(self):
        self.make_fence_dir("r", 1)
        hook = once_at("issued", lambda token: os.rename(self.path(f"r.lock.fence/{token}"), self.path(f"r.lock.fence/{token + 1}")))
        with mock.patch.object(fp, "_test_hook", hook):
            grant = self.acquire()
        self.assertEqual(hook.fired, [2])
        self.assertEqual(grant.fencing_token, 4)  # 2 burnt, 3 issued by the other writer
        self.assertEqual(self.lease("r")["fencing_token"], 4)


class CommitRuleTest(LockDirTest):
    def test_a_free_resource_is_taken_with_link_and_never_replaces_a_lease_that_appeared(self):
        # After our last check: someone else's lease file appears.
        hook = once_at("commit", lambda _: self.write_lease("r", lease_document("r", holder="other", fencing_token=50)))
        with mock.patch.object(fp, "_test_hook", hook):
            outcome = fp.try_acquire(self.dir, "r", "unit", 30, {})
        self.assertIsInstance(outcome, fp.State)
        self.assertEqual((outcome.kind, outcome.holder), ("held", "other"))
        self.assertEqual(self.lease("r")["holder"], "other")
        self.assertEqual(self.fence("r"), ["1"])  # our token was issued, then burnt
        self.assert_no_junk()

    def test_a_lease_file_changed_since_it_was_read_is_not_replaced(self):
        self.make_fence_dir("r", 7)
        self.write_expired("r", 7)
        hook = once_at("check", lambda _: self.write_lease("r", lease_document("r", holder="renewed-meanwhile", fencing_token=7)))
        with mock.patch.object(fp, "_test_hook", hook):
            outcome = fp.try_acquire(self.dir, "r", "unit", 30, {})
        self.assertEqual((outcome.kind, outcome.holder), ("held", "renewed-meanwhile"))
        self.assertEqual(self.fence("r"), ["7"])  # nothing issued
        self.assert_no_junk()

    def test_no_commit_after_the_budget_and_bounded_retries(self):
        offset = [0.0]
        steps = []

        def hook(step, resource, token):
            steps.append(step)
            if step == "check":
                offset[0] += fp.COMMIT_BUDGET_S  # every attempt stalls past the budget

        with mock.patch.object(fp, "_clock", lambda: time.monotonic() + offset[0]), mock.patch.object(fp, "_test_hook", hook):
            with self.assertRaises(UnavailableError) as caught:
                fp.try_acquire(self.dir, "r", "unit", 30, {})
        self.assertIn(f"{fp.MAX_ATTEMPTS} attempts", str(caught.exception))
        self.assertIn("since the guard was taken", str(caught.exception))
        self.assertEqual(steps.count("guard"), fp.MAX_ATTEMPTS)
        self.assertNotIn("issued", steps)
        self.assertEqual(os.listdir(self.dir), [])  # no token, no lease, no temp file, no guard

    def test_one_stall_costs_one_attempt(self):
        offset = [0.0]
        steps = []

        def hook(step, resource, token):
            steps.append(step)
            if step == "temp" and steps.count("temp") == 1:
                offset[0] += fp.COMMIT_BUDGET_S + 0.001

        with mock.patch.object(fp, "_clock", lambda: time.monotonic() + offset[0]), mock.patch.object(fp, "_test_hook", hook):
            grant = fp.acquire(self.dir, "r", "unit", 30)
        self.assertEqual(grant.fencing_token, 1)
        self.assertEqual(steps.count("guard"), 2)
        self.assert_no_junk()

    def test_a_renewal_past_the_holders_own_deadline_writes_nothing(self):
        grant = fp.acquire(self.dir, "r", "unit", 30)
        before = os.stat(self.path("r.lock"))

        def hook(step, resource, token):
            if step == "check":
                time.sleep(0.06)

        with mock.patch.object(fp, "_test_hook", hook):
            with self.assertRaises(LeaseLostError) as caught:
                fp._renew_guarded(grant, give_up_at=time.monotonic() + 0.05)
        self.assertEqual(caught.exception.reason, "unconfirmed")
        self.assertEqual(fp.Identity.of(os.stat(self.path("r.lock"))), fp.Identity.of(before))
        self.assert_no_junk()

    def test_a_failed_directory_fsync_after_a_grant_removes_its_own_lease_file(self):
        self.make_fence_dir("r", 4)
        real = fp._fsync_dir

        def failing(path):
            if path == self.dir:
                raise OSError(5, "Input/output error")
            real(path)

        with mock.patch.object(fp, "_fsync_dir", failing):
            with self.assertRaises(UnavailableError) as caught:
                fp.try_acquire(self.dir, "r", "unit", 30, {})
        self.assertIn("EIO", str(caught.exception))
        self.assertFalse(os.path.exists(self.path("r.lock")))
        self.assertEqual(self.fence("r"), ["5"])  # burnt
        self.assertEqual(fp.acquire(self.dir, "r", "unit", 30).fencing_token, 6)

    def test_a_failed_directory_fsync_after_a_renewal_is_not_confirmed_and_the_file_stays(self):
        grant = fp.acquire(self.dir, "r", "unit", 30)
        confirmed = grant.confirmed_at_monotonic

        def failing(path):
            raise OSError(5, "Input/output error")

        with mock.patch.object(fp, "_fsync_dir", failing):
            with self.assertRaises(UnavailableError):
                fp._renew_guarded(grant)
        self.assertEqual(grant.confirmed_at_monotonic, confirmed)
        self.assertEqual(self.lease("r")["fencing_token"], grant.fencing_token)

    def test_a_writer_whose_temp_file_was_swept_just_fails_its_commit(self):
        swept = []

        def sweep(_):
            swept.extend(n for n in os.listdir(self.dir) if fp.TEMP_PATTERN.fullmatch(n))
            for name in swept:
                os.unlink(self.path(name))

        with mock.patch.object(fp, "_test_hook", once_at("commit", sweep)):
            grant = fp.acquire(self.dir, "r", "unit", 30)
        self.assertEqual(len(swept), 1)
        self.assertEqual(grant.fencing_token, 2)  # 1 was burnt by the failed commit
        self.assertEqual(self.lease("r")["fencing_token"], 2)
        self.assert_no_junk()


class GuardTest(LockDirTest):
    def test_a_guard_path_that_is_not_an_empty_directory_is_an_error_and_left_alone(self):
        with open(self.path("file.lock.guard"), "w") as f:
            f.write("x")
        os.mkdir(self.path("full.lock.guard"))
        open(self.path("full.lock.guard/inside"), "w").close()
        os.mkdir(self.path("stalefull.lock.guard"))
        open(self.path("stalefull.lock.guard/inside"), "w").close()
        then = time.time() - 60
        os.utime(self.path("stalefull.lock.guard"), (then, then))
        for resource, words in (("file", "not a directory"), ("full", "not an empty directory"), ("stalefull", "not an empty directory")):
            with self.subTest(resource=resource):
                with self.assertRaises(UnavailableError) as caught:
                    fp.acquire(self.dir, resource, "unit", 30, wait=5)
                self.assertIn(words, str(caught.exception))
                self.assertIn(f"{resource}.lock.guard", str(caught.exception))
                self.assertTrue(os.path.lexists(self.path(f"{resource}.lock.guard")))
        self.assertTrue(os.path.exists(self.path("full.lock.guard/inside")))

    def test_a_stale_guard_is_broken_and_a_fresh_one_waited_for(self):
        os.mkdir(self.path("r.lock.guard"))
        then = time.time() - fp.GUARD_STALE_MS / 1000 - 1
        os.utime(self.path("r.lock.guard"), (then, then))
        self.assertEqual(fp.acquire(self.dir, "r", "unit", 30).fencing_token, 1)
        self.assert_no_junk()
        # A fresh guard: try-once mode answers at once, waiting mode waits until its limit.
        os.mkdir(self.path("r.lock.guard"))
        self.assertIsNone(fp._take_guard(self.dir, "r", wait=False))
        started = time.monotonic()
        with self.assertRaises(GuardTimeoutError):
            fp._take_guard(self.dir, "r", give_up_at=time.monotonic() + 0.2)
        self.assertGreaterEqual(time.monotonic() - started, 0.19)
        threading.Timer(0.1, os.rmdir, [self.path("r.lock.guard")]).start()
        guard = fp._take_guard(self.dir, "r", give_up_at=time.monotonic() + 5)
        self.assertIsNotNone(guard)
        guard.release()
        self.assert_no_junk()

    def test_no_thread_keeps_the_guard_fresh(self):
        names = []

        def hook(step, resource, token):
            if step == "commit":
                names.extend(t.name for t in threading.enumerate())

        with mock.patch.object(fp, "_test_hook", hook):
            fp.acquire(self.dir, "r", "unit", 30)
        self.assertEqual([n for n in names if "guard" in n], [])

    def test_a_guard_broken_and_taken_by_someone_else_is_not_removed_by_us(self):
        def hook(step, resource, token):
            if step == "commit":
                os.rmdir(self.path("r.lock.guard"))
                os.mkdir(self.path("r.lock.guard"))  # someone else's now

        with mock.patch.object(fp, "_test_hook", hook), self.assertLogs("mcp_lockd", "WARNING") as logs:
            fp.acquire(self.dir, "r", "unit", 30)
        self.assertTrue(os.path.isdir(self.path("r.lock.guard")))
        self.assertIn("was broken while we held it", "\n".join(logs.output))


class TempFilesTest(LockDirTest):
    def test_temp_files_are_named_after_the_resource_pid_and_a_random_part(self):
        seen = []

        def hook(step, resource, token):
            if step == "temp":
                seen.extend(n for n in os.listdir(self.dir) if n.endswith(".tmp"))

        with mock.patch.object(fp, "_test_hook", hook):
            fp.acquire(self.dir, "gate.way", "unit", 30)
        self.assertEqual(len(seen), 1)
        self.assertRegex(seen[0], rf"^\.gate\.way\.{os.getpid()}\.[0-9a-f]{{12}}\.tmp$")
        self.assertTrue(fp.TEMP_PATTERN.fullmatch(seen[0]))
        self.assertFalse(fp.RESOURCE_PATTERN.fullmatch(seen[0]))  # never mistaken for a resource's file

    def test_sweep_removes_only_left_over_temp_files_older_than_a_minute(self):
        old = time.time() - 61

        def make(name, directory=False, age=old):
            path = self.path(name)
            if directory:
                os.mkdir(path)
                open(os.path.join(path, "12"), "w").close()
            else:
                open(path, "w").close()
            os.utime(path, (age, age))

        make(".r.123.abcdef.tmp")
        make(".r.124.abcdef.tmp", directory=True)  # a fence dir being built
        make("..probe.125.abcdef.tmp")
        make(".r.126.abcdef.tmp", age=time.time() - 30)  # young
        make("r.lock")  # not a temp file
        make(".hidden")
        make(".r.tmp")
        removed = fp.sweep_temp_files(self.dir)
        self.assertEqual(removed, ["..probe.125.abcdef.tmp", ".r.123.abcdef.tmp", ".r.124.abcdef.tmp"])
        self.assertEqual(sorted(os.listdir(self.dir)), [".hidden", ".r.126.abcdef.tmp", ".r.tmp", "r.lock"])
        with self.assertRaises(InvalidArgumentError):
            fp.sweep_temp_files(self.dir, max_age_s=59)
        self.assertEqual(fp.sweep_temp_files(self.path("missing")), [])


if __name__ == "__main__":
    unittest.main()
