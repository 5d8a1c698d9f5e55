"""File protocol version 3 (docs/protocol.md, issue 12), in temp dirs: the checksum that makes a
torn lease file unreadable, the compact format writers write, and the renewal in place."""

import errno
import hashlib
import json
import os
import re
import threading
import time
import unittest
from unittest import mock

from mcp_lockd import LeaseLostError, UnavailableError
from mcp_lockd import file_protocol as fp

from .helpers import LockDirTest, lease_document


def v3_bytes(resource="r", **fields):
    """A valid version 3 lease file of `resource`, as a version 3 writer writes it."""
    return fp.encode_lease(lease_document(resource, **{"version": 3, **fields}))


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def classify(data, resource="r"):
    now = time.time_ns() / 1e6
    return fp.classify(data, resource, now, now)


def with_checksum(prefix: bytes, tail=b"\n") -> bytes:
    """`prefix` (a JSON object without its closing brace) closed with the checksum of its bytes."""
    return prefix + b',"checksum":"' + hashlib.sha256(prefix).hexdigest().encode() + b'"}' + tail


class ChecksumTest(unittest.TestCase):
    def test_a_valid_file_is_held_whatever_its_trailing_whitespace_or_serialization(self):
        data = v3_bytes(holder="h\u00f6lder \u2603", metadata={"k": "v"})
        self.assertIn("h\u00f6lder \u2603".encode(), data)  # UTF-8 as written, not \u escapes
        for tail in (b"\n", b"", b"\r\n", b" \t\n\n"):
            with self.subTest(tail=tail):
                state = classify(data[:-1] + tail)
                self.assertEqual((state.kind, state.holder, state.reason), ("held", "h\u00f6lder \u2603", None))
        # The checksum covers the bytes as written, not a canonical form: another writer's spacing is fine.
        document = lease_document("r", version=3)
        spaced = json.dumps(document, indent=2).encode()[:-2]  # without "\n}"
        self.assertEqual(classify(with_checksum(spaced)).kind, "held")

    def test_a_changed_byte_makes_it_unreadable_naming_the_checksum(self):
        data = v3_bytes()
        at = data.index(b'"expires_at":"') + len(b'"expires_at":"') + 3  # a digit of the year
        torn = data[:at] + (b"1" if data[at : at + 1] != b"1" else b"2") + data[at + 1 :]
        state = classify(torn)
        self.assertEqual(state.kind, "unreadable")
        self.assertIn("checksum", state.reason)
        self.assertEqual(state.counted_token, 7)  # still counts for the next token, as any parseable file

    def test_every_truncation_is_unreadable_never_free(self):
        data = v3_bytes()
        for length in range(len(data) - 1):  # dropping the trailing newline alone leaves it valid
            with self.subTest(length=length):
                self.assertEqual(classify(data[:length]).kind, "unreadable")
        self.assertEqual(classify(data[:-1]).kind, "held")

    def test_the_checksum_must_be_the_last_member_written_exactly(self):
        document = lease_document("r", version=3)
        prefix = json.dumps(document, separators=(",", ":")).encode()[:-1]
        good = with_checksum(prefix)
        checksum = hashlib.sha256(prefix).hexdigest()
        cases = {
            "not last": prefix + b',"checksum":"' + checksum.encode() + b'","x":1}\n',
            "first": b'{"checksum":"' + checksum.encode() + b'",' + prefix[1:] + b"}\n",
            "spaced": prefix + b', "checksum": "' + checksum.encode() + b'"}\n',
            "upper-case hex": prefix + b',"checksum":"' + checksum.upper().encode() + b'"}\n',
            "another hash": prefix + b',"checksum":"' + hashlib.sha256(prefix + b" ").hexdigest().encode() + b'"}\n',
            "63 digits": prefix + b',"checksum":"' + checksum[:63].encode() + b'"}\n',
            "hash of it all": prefix + b',"checksum":"' + hashlib.sha256(good).hexdigest().encode() + b'"}\n',
            "form feed after": good[:-1] + b"\x0c",  # not JSON whitespace
            "missing": prefix + b"}\n",
            "not a string": prefix + b',"checksum":' + str(int(checksum, 16) % 10**15).encode() + b"}\n",
        }
        self.assertEqual(classify(good).kind, "held")
        for name, data in cases.items():
            with self.subTest(case=name):
                state = classify(data)
                self.assertEqual(state.kind, "unreadable", data)
                if name != "form feed after":  # that one is not JSON at all
                    self.assertIn("checksum", state.reason)

    def test_versions_1_and_2_need_no_checksum_and_ignore_one(self):
        for version in (1, 2):
            with self.subTest(version=version):
                self.assertEqual(classify(json.dumps(lease_document("r", version=version)).encode()).kind, "held")
                self.assertEqual(classify(json.dumps(lease_document("r", version=version, checksum="nope")).encode()).kind, "held")
                # Not the version 3 form either: a v2 file read as v2 whatever its bytes.
                self.assertEqual(classify(fp.encode_lease(lease_document("r", version=version))).kind, "held")

    def test_version_3_keeps_every_version_2_rule(self):
        for name, value in (("fencing_token", 0), ("renewed_at", None), ("ttl", 3601), ("holder", 5)):
            with self.subTest(field=name):
                state = classify(v3_bytes(**{name: value}))
                self.assertEqual(state.kind, "unreadable")
                self.assertIn(name, state.reason)
        self.assertEqual(classify(v3_bytes(version=3.0)).kind, "held")  # 3.0 is the integer 3
        self.assertEqual(classify(v3_bytes("other")).kind, "unreadable")  # names the wrong resource


class WriterTest(LockDirTest):
    def test_a_grant_writes_compact_json_with_the_checksum_last_and_one_newline(self):
        grant = fp.acquire(self.dir, "r", "unit \u00e9", 30, metadata={"k": "v"})
        data = read_bytes(self.path("r.lock"))
        self.assertTrue(data.endswith(b'"}\n') and data.count(b"\n") == 1, data)
        tail = re.search(rb',"checksum":"([0-9a-f]{64})"\}\n\Z', data)
        self.assertIsNotNone(tail)
        self.assertEqual(hashlib.sha256(data[: tail.start()]).hexdigest(), tail.group(1).decode())
        document = json.loads(data)
        self.assertEqual(list(document)[-1], "checksum")
        self.assertEqual(data[:-1].decode(), json.dumps(document, separators=(",", ":"), ensure_ascii=False))
        self.assertEqual(document["version"], 3)
        for name in ("acquired_at", "renewed_at", "expires_at"):
            self.assertRegex(document[name], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(grant.identity, fp.Identity.of(os.stat(self.path("r.lock"))))

    def test_a_version_2_file_is_renewed_the_guarded_way_into_version_3(self):
        grant = fp.acquire(self.dir, "r", "unit", 30)
        # The same lease, rewritten as version 2 (temp + rename): not what our last write left.
        document = json.loads(read_bytes(self.path("r.lock")))
        del document["checksum"]
        document["version"] = 2
        document["x_unknown"] = [1]
        self.write_lease("r", json.dumps(document, indent=2))
        before = os.stat(self.path("r.lock"))
        steps = []
        with mock.patch.object(fp, "_test_hook", lambda step, *_: steps.append(step)):
            fp.renew(grant)
        self.assertIn("guard", steps)
        self.assertNotIn("in-place", steps)
        after = os.stat(self.path("r.lock"))
        self.assertNotEqual(after.st_ino, before.st_ino)
        state = fp.read_state(self.dir, "r")
        self.assertEqual((state.kind, state.document["version"], state.document["x_unknown"]), ("held", 3, [1]))
        self.assertEqual(grant.identity, fp.Identity.of(after))
        self.assert_no_junk()


class InPlaceRenewalTest(LockDirTest):
    def steps_of(self, action):
        steps = []
        with mock.patch.object(fp, "_test_hook", lambda step, *_: steps.append(step)):
            action()
        return steps

    def test_keeps_the_inode_and_the_length_and_moves_the_expiry(self):
        grant = fp.acquire(self.dir, "r", "unit", 30, metadata={"k": "v"})
        first = os.stat(self.path("r.lock"))
        first_document = fp.read_state(self.dir, "r").document
        for _ in range(3):
            previous = fp.read_state(self.dir, "r").document
            time.sleep(0.002)  # so the new times differ from the last write's
            steps = self.steps_of(lambda: fp.renew(grant))
            self.assertEqual(steps, ["in-place"])  # no guard, no temp file
            st = os.stat(self.path("r.lock"))
            self.assertEqual((st.st_ino, st.st_size, st.st_nlink), (first.st_ino, first.st_size, 1))
            self.assertEqual(grant.identity, fp.Identity.of(st))
            state = fp.read_state(self.dir, "r")
            self.assertEqual(state.kind, "held")  # the checksum verifies
            self.assertEqual(state.expires_at_ms, grant.expires_at)
            self.assertGreater(state.expires_at_ms, fp.parse_time(previous["expires_at"]))
            self.assertEqual(fp.parse_time(state.document["expires_at"]) - fp.parse_time(state.document["renewed_at"]), 30_000)
            changed = {k for k in state.document if state.document[k] != first_document.get(k)}
            self.assertEqual(changed, {"renewed_at", "expires_at", "checksum"})
        self.assert_no_junk()

    def test_a_renewal_after_the_file_was_replaced_is_lost_and_never_writes_into_the_new_file(self):
        grant = fp.acquire(self.dir, "r", "A", 0.3)
        taken = {}

        def b_takes_over():
            # A stopped after its identity check: its lease expires, B reclaims and is granted R.
            time.sleep(max(0.0, (grant.expires_at - fp.now_ms()) / 1000 + 0.005))
            taken["grant"] = fp.acquire(self.dir, "r", "B", 30)
            with open(self.path("r.lock"), "rb") as f:
                taken["bytes"] = f.read()

        with mock.patch.object(fp, "_test_hook", lambda step, *_: step == "in-place" and b_takes_over()):
            with self.assertRaises(LeaseLostError) as caught:
                fp.renew(grant)
        self.assertIn("replaced", str(caught.exception))
        with open(self.path("r.lock"), "rb") as f:
            self.assertEqual(f.read(), taken["bytes"])  # B's file, byte for byte
        self.assertEqual(fp.renew(taken["grant"]).fencing_token, grant.fencing_token + 1)  # B renews in place
        self.assertFalse(fp.release(grant))
        self.assertEqual(fp.read_state(self.dir, "r").holder, "B")

    def test_a_renewal_of_a_removed_file_is_lost_and_creates_nothing(self):
        grant = fp.acquire(self.dir, "r", "unit", 30)
        os.unlink(self.path("r.lock"))
        with self.assertRaises(LeaseLostError) as caught:
            fp.renew(grant)
        self.assertEqual(caught.exception.reason, "expired")
        self.assertFalse(os.path.exists(self.path("r.lock")))
        # Removed while we were about to write: the write lands on the unlinked inode.
        grant = fp.acquire(self.dir, "r", "unit", 30)
        with mock.patch.object(fp, "_test_hook", lambda step, *_: step == "in-place" and os.unlink(self.path("r.lock"))):
            with self.assertRaises(LeaseLostError):
                fp.renew(grant)
        self.assertFalse(os.path.exists(self.path("r.lock")))

    def test_a_symlink_in_its_place_is_not_written_through(self):
        grant = fp.acquire(self.dir, "r", "unit", 30)
        self.write_lease("other", lease_document("other"))
        before = read_bytes(self.path("other.lock"))
        os.unlink(self.path("r.lock"))
        os.symlink(self.path("other.lock"), self.path("r.lock"))
        with self.assertRaises(LeaseLostError):
            fp.renew(grant)
        self.assertEqual(read_bytes(self.path("other.lock")), before)

    def test_a_file_touched_since_our_last_write_is_renewed_the_guarded_way(self):
        grant = fp.acquire(self.dir, "r", "unit", 30)
        first_ino = os.stat(self.path("r.lock")).st_ino
        later = time.time() + 5
        os.utime(self.path("r.lock"), (later, later))  # same inode, same size, another mtime
        steps = self.steps_of(lambda: fp.renew(grant))
        self.assertIn("guard", steps)
        self.assertNotIn("in-place", steps)
        renewed_ino = os.stat(self.path("r.lock")).st_ino
        self.assertNotEqual(renewed_ino, first_ino)  # the guarded renewal renames a new file in
        self.assertEqual(fp.read_state(self.dir, "r").kind, "held")
        # It recorded what it wrote: the next renewal goes in place again.
        self.assertEqual(self.steps_of(lambda: fp.renew(grant)), ["in-place"])
        self.assertEqual(os.stat(self.path("r.lock")).st_ino, renewed_ino)

    def test_content_of_another_length_is_renewed_the_guarded_way(self):
        grant = fp.acquire(self.dir, "r", "unit", 30)
        grant.written = {**grant.written, "x_longer": "yes"}  # as if a field had grown
        steps = self.steps_of(lambda: fp.renew(grant))
        self.assertIn("guard", steps)
        self.assertNotIn("in-place", steps)
        self.assertNotIn("x_longer", fp.read_state(self.dir, "r").document)  # the guarded way rewrites the file's fields

    def test_a_write_landing_after_the_overwritten_expiry_is_lost(self):
        grant = fp.acquire(self.dir, "r", "unit", 30)
        offset = [0]
        real_now = fp.now_ms

        def late(step, *_):
            if step == "in-place":
                offset[0] = grant.expires_at - real_now()  # the wall clock reaches the old expiry

        with mock.patch.object(fp, "now_ms", lambda: real_now() + offset[0]), mock.patch.object(fp, "_test_hook", late):
            with self.assertRaises(LeaseLostError) as caught:
                fp.renew(grant)
        self.assertEqual(caught.exception.reason, "expired")
        self.assertIn("after it", str(caught.exception))

    def test_past_its_own_deadline_it_writes_nothing_in_place(self):
        grant = fp.acquire(self.dir, "r", "unit", 30)
        before = fp.Identity.of(os.stat(self.path("r.lock")))
        # give_up_at passes between the identity check and the write: lost, nothing written.
        with mock.patch.object(fp, "_test_hook", lambda step, *_: step == "in-place" and time.sleep(0.06)):
            with self.assertRaises(LeaseLostError) as caught:
                fp.renew(grant, give_up_at=time.monotonic() + 0.05)
        self.assertEqual(caught.exception.reason, "unconfirmed")
        self.assertEqual(fp.Identity.of(os.stat(self.path("r.lock"))), before)
        # Past the monotonic deadline of its last confirmed write, only the file can tell: guarded.
        grant.confirmed_at_monotonic -= 31
        steps = self.steps_of(lambda: fp.renew(grant))
        self.assertIn("guard", steps)
        self.assertNotIn("in-place", steps)

    def test_a_failed_fdatasync_is_not_confirmed_and_the_next_renewal_still_works(self):
        grant = fp.acquire(self.dir, "r", "unit", 30)
        confirmed = (grant.confirmed_at_monotonic, grant.expires_at)

        def failing(fd):
            raise OSError(errno.EIO, "Input/output error")

        with mock.patch.object(fp.os, "fdatasync", failing):
            with self.assertRaises(UnavailableError) as caught:
                fp.renew(grant)
        self.assertIn("EIO", str(caught.exception))
        self.assertEqual((grant.confirmed_at_monotonic, grant.expires_at), confirmed)
        fp.renew(grant)
        state = fp.read_state(self.dir, "r")
        self.assertEqual((state.kind, state.expires_at_ms), ("held", grant.expires_at))

    def test_a_reader_sees_a_half_written_file_as_unreadable_never_free(self):
        grant = fp.acquire(self.dir, "r", "A", 30)
        old = read_bytes(self.path("r.lock"))
        document = dict(grant.written, renewed_at=fp.format_time(fp.now_ms() + 7), expires_at=fp.format_time(fp.now_ms() + 30_007))
        new = fp.encode_lease(document)
        self.assertEqual(len(new), len(old))
        # A torn write: the first half of the new content over the old.
        fd = os.open(self.path("r.lock"), os.O_WRONLY)
        try:
            os.pwrite(fd, new[: len(new) // 2], 0)
        finally:
            os.close(fd)
        state = fp.read_state(self.dir, "r")
        self.assertEqual(state.kind, "unreadable")
        self.assertIn("checksum", state.reason)
        self.assertAlmostEqual(state.blocked_until_ms, state.mtime_ms + 3_600_000)
        outcome = fp.try_acquire(self.dir, "r", "B", 30, {})
        self.assertIsInstance(outcome, fp.State)  # busy, not granted
        self.assertEqual(outcome.kind, "unreadable")

    def test_readers_during_many_renewals_see_it_held_or_torn_never_free(self):
        grant = fp.acquire(self.dir, "r", "unit", 30)
        seen = {}
        stop = threading.Event()

        def read_loop():
            while not stop.is_set():
                kind = fp.read_state(self.dir, "r").kind
                seen[kind] = seen.get(kind, 0) + 1

        reader = threading.Thread(target=read_loop)
        reader.start()
        try:
            for _ in range(300):
                fp.renew(grant)
        finally:
            stop.set()
            reader.join()
        self.assertEqual(set(seen) - {"held", "unreadable"}, set(), seen)
        self.assertGreater(seen.get("held", 0), 0)


if __name__ == "__main__":
    unittest.main()
