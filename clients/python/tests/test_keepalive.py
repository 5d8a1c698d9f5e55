"""KeepAliveSession against a scripted stand-in for the KeepAlive call: renewal timing, lost
leases, reconnection. The real service is exercised by test/clients/*.test.ts."""

import queue
import threading
import time
import unittest

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from mcp_lockd._gen import lock_pb2 as pb
from mcp_lockd.endpoints import Endpoints
from mcp_lockd.keepalive import KeepAliveSession
from mcp_lockd.service_client import ServiceLease


class FakeRpcError(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return "fake"


class FakeCall:
    """One KeepAlive call: the session's requests arrive in `received`; answers are scripted."""

    def __init__(self, requests, answer):
        self.received = queue.Queue()
        self._answers = queue.Queue()
        self._answer = answer
        self.cancelled = False
        threading.Thread(target=self._consume, args=(requests,), daemon=True).start()

    def _consume(self, requests):
        for request in requests:
            self.received.put(request)
            reply = self._answer(request)
            if reply is not None:
                self._answers.put(reply)

    def fail(self, code=grpc.StatusCode.UNAVAILABLE):
        self._answers.put(FakeRpcError(code))

    def cancel(self):
        self.cancelled = True
        self._answers.put(FakeRpcError(grpc.StatusCode.CANCELLED))

    def __iter__(self):
        return self

    def __next__(self):
        item = self._answers.get()
        if isinstance(item, Exception):
            raise item
        return item


def renewed(request, ttl=0.9):
    expires = time.time() + ttl
    return pb.KeepAliveResponse(
        lease_id=request.lease_id,
        expires_at=timestamp_pb2.Timestamp(seconds=int(expires), nanos=int((expires % 1) * 1e9)),
        ttl=duration_pb2.Duration(seconds=int(ttl), nanos=int(round((ttl % 1) * 1e9))),
    )


class FakeChannel:
    def __init__(self, harness, address):
        self.harness = harness
        self.address = address

    def unary_unary(self, method):
        return lambda *args, **kwargs: b""

    def close(self):
        pass


class FakeStub:
    def __init__(self, channel):
        self.channel = channel

    def KeepAlive(self, requests, wait_for_ready):
        return self.channel.harness.open_call(requests, self.channel.address, wait_for_ready)


class Harness:
    def __init__(self, answer=renewed, addresses=("fake:1",)):
        self.calls = []
        self.answer = answer
        endpoints = Endpoints(list(addresses), lambda address: FakeChannel(self, address), FakeStub)
        self.session = KeepAliveSession(endpoints, lambda lease_id: pb.KeepAliveRequest(lease_id=lease_id),
                                        initial_backoff=0.05, max_backoff=0.2)

    def open_call(self, requests, address, wait_for_ready):
        call = FakeCall(requests, lambda request: self.answer(request))
        call.address = address
        call.wait_for_ready = wait_for_ready
        call.opened_at = time.monotonic()
        self.calls.append(call)
        return call

    def call(self, index):
        """The index-th KeepAlive call, once the keeper has opened it."""
        deadline = time.monotonic() + 5
        while len(self.calls) <= index:
            if time.monotonic() > deadline:
                raise AssertionError(f"KeepAlive call {index} was never opened")
            time.sleep(0.005)
        return self.calls[index]

    def lease(self, lease_id="secret-lease-id", ttl=0.9):
        now = time.time()
        granted = pb.Lease(
            lease_id=lease_id, resource="r", holder="h", fencing_token=1,
            acquired_at=timestamp_pb2.Timestamp(seconds=int(now), nanos=int((now % 1) * 1e9)),
            expires_at=timestamp_pb2.Timestamp(seconds=int(now + ttl), nanos=int(((now + ttl) % 1) * 1e9)),
            ttl=duration_pb2.Duration(seconds=int(ttl), nanos=int(round((ttl % 1) * 1e9))),
        )
        lease = ServiceLease(None, granted, time.monotonic(), now, waited=False)
        self.session.add(lease)
        return lease


class KeepAliveSessionTest(unittest.TestCase):
    def test_renews_each_lease_at_about_a_third_of_its_ttl(self):
        h = Harness()
        lease = h.lease(ttl=0.9)
        started = time.monotonic()
        self.assertTrue(h.call(0).received.get(timeout=5))  # opened at once, first renewal ~0.3 s later
        first = time.monotonic() - started
        time.sleep(1.5)
        self.assertFalse(lease.lost.is_set())
        self.assertGreaterEqual(h.session.renewals_confirmed, 3)
        self.assertLessEqual(h.session.renewals_confirmed, 7)
        self.assertGreater(first, 0.2)
        self.assertLess(first, 0.6)
        self.assertEqual(len(h.calls), 1)  # one stream for everything
        h.session.close()

    def test_an_expired_answer_loses_the_lease_and_the_keeper_ends(self):
        h = Harness(answer=lambda request: pb.KeepAliveResponse(lease_id=request.lease_id, expired=True))
        lease = h.lease(ttl=0.9)
        self.assertTrue(lease.lost.wait(5))
        self.assertEqual(lease.lost.reason, "expired")
        deadline = time.monotonic() + 5
        while h.session._keeper is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertIsNone(h.session._keeper)
        self.assertTrue(h.calls[0].cancelled)  # its stream was closed

    def test_a_broken_stream_is_reopened_and_the_renewal_sent_again(self):
        h = Harness()
        lease = h.lease(ttl=0.9)
        h.call(0).received.get(timeout=5)
        h.calls[0].fail()
        h.call(1)
        time.sleep(1.2)
        self.assertFalse(lease.lost.is_set())
        self.assertGreaterEqual(h.calls[1].received.qsize(), 2)
        h.session.close()

    def test_a_stream_opened_after_the_last_lease_was_released_renews_a_new_lease_when_due_not_at_once(self):
        h = Harness()
        first = h.lease("first", ttl=0.9)
        h.call(0).received.get(timeout=5)
        h.session.remove(first)  # released: the keeper closes the stream and ends
        deadline = time.monotonic() + 5
        while h.session._keeper is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertTrue(h.calls[0].cancelled)
        added = time.monotonic()
        h.lease("second", ttl=1.5)
        request = h.call(1).received.get(timeout=5)
        # Just granted: renewed at a third of its ttl (0.5 s), unlike after a break (next test).
        self.assertEqual(request.lease_id, "second")
        self.assertGreater(time.monotonic() - added, 0.35)
        h.session.close()

    def test_with_several_replicas_a_broken_stream_moves_to_the_next_at_once_and_renews_every_lease(self):
        h = Harness(addresses=("a:1", "b:2"))
        first, second = h.lease("first", ttl=3), h.lease("second", ttl=3)
        h.call(0).received.get(timeout=5)  # renewals every second
        self.assertEqual(h.calls[0].address, "a:1")
        self.assertFalse(h.calls[0].wait_for_ready)  # a replica that is down fails the stream at once
        broken_at = time.monotonic()
        h.calls[0].fail()
        renewed_ids = {h.call(1).received.get(timeout=5).lease_id, h.calls[1].received.get(timeout=5).lease_id}
        self.assertEqual(h.calls[1].address, "b:2")
        self.assertLess(h.calls[1].opened_at - broken_at, 0.05)  # no backoff
        self.assertEqual(renewed_ids, {"first", "second"})  # both at once, not when due
        self.assertFalse(first.lost.is_set() or second.lost.is_set())
        h.session.close()

    def test_when_every_replica_failed_in_a_row_the_stream_backs_off_and_waits_for_a_connection(self):
        h = Harness(answer=lambda request: None, addresses=("a:1", "b:2"))
        h.lease("held", ttl=3)
        h.call(0).fail()
        h.call(1).fail()
        self.assertEqual([c.address for c in h.calls], ["a:1", "b:2"])
        self.assertEqual([c.wait_for_ready for c in h.calls], [False, False])
        h.call(2)
        self.assertEqual(h.calls[2].address, "a:1")
        self.assertTrue(h.calls[2].wait_for_ready)
        self.assertGreater(h.calls[2].opened_at - h.calls[1].opened_at, 0.02)  # the backoff: 0.05 s with jitter
        h.session.close()

    def test_unanswered_renewals_drop_the_stream_and_the_lease_is_lost_by_its_last_confirmed_expiry(self):
        h = Harness(answer=lambda request: None)  # a stream that never answers
        lease = h.lease(ttl=2.4)
        confirmed_expiry = lease.expires_at.timestamp()
        self.assertTrue(lease.lost.wait(5))
        self.assertLessEqual(time.time(), confirmed_expiry)
        self.assertEqual(lease.lost.reason, "unconfirmed")
        # The first renewal went out at ~0.8 s and was given up on 1 s later, so a second stream was opened.
        self.assertGreaterEqual(len(h.calls), 2)
        self.assertTrue(h.calls[0].cancelled)

    def test_answers_for_released_leases_are_ignored(self):
        h = Harness()
        kept = h.lease("kept", ttl=0.9)
        gone = h.lease("gone", ttl=0.9)
        h.session.remove(gone)
        time.sleep(1.0)
        self.assertFalse(kept.lost.is_set())
        ids = set()
        while not h.calls[0].received.empty():
            ids.add(h.calls[0].received.get().lease_id)
        self.assertEqual(ids, {"kept"})
        h.session.close()

    def test_answers_for_different_leases_may_come_in_another_order(self):
        held = []

        def answer_in_pairs_reversed(request):
            held.append(request)
            if len(held) < 2:
                return None
            first, second = held.pop(), held.pop()  # the later request is answered first
            call = h.calls[-1]
            call._answers.put(renewed(first))
            return renewed(second)

        h = Harness(answer=answer_in_pairs_reversed)
        a, b = h.lease("a", ttl=0.9), h.lease("b", ttl=0.9)
        time.sleep(1.5)
        self.assertFalse(a.lost.is_set())
        self.assertFalse(b.lost.is_set())
        self.assertGreaterEqual(h.session.renewals_confirmed, 6)
        self.assertEqual(len(h.calls), 1)
        h.session.close()

    def test_repr_and_logs_never_show_the_lease_id(self):
        h = Harness()
        with self.assertLogs("mcp_lockd", level="DEBUG") as logs:
            lease = h.lease("secret-lease-id", ttl=0.9)
            h.call(0).received.get(timeout=5)
            h.calls[0].fail()
            time.sleep(0.5)
        h.session.close()
        self.assertNotIn("secret-lease-id", repr(lease))
        self.assertEqual(lease.lease_id, "secret-lease-id")
        self.assertTrue(logs.output)
        for line in logs.output:
            self.assertNotIn("secret-lease-id", line)


if __name__ == "__main__":
    unittest.main()
