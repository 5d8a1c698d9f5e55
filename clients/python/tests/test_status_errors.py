import datetime as dt
import unittest

import grpc

from mcp_lockd import InvalidArgumentError, LeaseLostError, LockError, ResourceBusyError, UnavailableError
from mcp_lockd.status_errors import error_from_rpc


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details, trailing=()):
        self._code, self._details, self._trailing = code, details, trailing

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailing


class StatusErrorsTest(unittest.TestCase):
    def test_aborted_with_trailing_metadata(self):
        err = error_from_rpc(
            FakeRpcError(
                grpc.StatusCode.ABORTED,
                'resource "r" is held by "other" until 2026-01-01T00:00:00.000Z: tried once',
                (("mcp-lockd-holder-bin", "höl\"der ✓".encode()), ("mcp-lockd-expires-at", "2026-01-09T14:30:00.500Z")),
            ),
            "r",
        )
        self.assertIsInstance(err, ResourceBusyError)
        self.assertEqual((err.resource, err.holder), ("r", 'höl"der ✓'))
        self.assertEqual(err.expires_at, dt.datetime(2026, 1, 9, 14, 30, 0, 500000, tzinfo=dt.timezone.utc))
        self.assertEqual(err.code, "ABORTED")

    def test_aborted_from_the_message_of_an_older_service(self):
        err = error_from_rpc(
            FakeRpcError(grpc.StatusCode.ABORTED, 'resource "r" is held by "a b" until 2026-01-09T14:30:00.000Z (2 waiting): tried once'),
            "r",
        )
        self.assertIsInstance(err, ResourceBusyError)
        self.assertEqual(err.holder, "a b")
        self.assertEqual(err.expires_at, dt.datetime(2026, 1, 9, 14, 30, tzinfo=dt.timezone.utc))

    def test_aborted_without_details(self):
        err = error_from_rpc(FakeRpcError(grpc.StatusCode.ABORTED, 'resource "r" is busy: wait ran out'), "r")
        self.assertIsInstance(err, ResourceBusyError)
        self.assertIsNone(err.holder)
        self.assertIsNone(err.expires_at)

    def test_invalid_argument_names_the_field(self):
        err = error_from_rpc(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "ttl: 7200000 ms is over 1 h", (("mcp-lockd-field", "ttl"),)))
        self.assertIsInstance(err, InvalidArgumentError)
        self.assertEqual(err.field, "ttl")
        err = error_from_rpc(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "metadata.key: too long"))
        self.assertEqual(err.field, "metadata.key")

    def test_the_other_codes(self):
        self.assertIsInstance(error_from_rpc(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "shutting down")), UnavailableError)
        self.assertIsInstance(error_from_rpc(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "late")), UnavailableError)
        lost = error_from_rpc(FakeRpcError(grpc.StatusCode.NOT_FOUND, "lease not found"), "r")
        self.assertIsInstance(lost, LeaseLostError)
        self.assertEqual((lost.resource, lost.reason), ("r", "expired"))
        internal = error_from_rpc(FakeRpcError(grpc.StatusCode.INTERNAL, "EIO"))
        self.assertIs(type(internal), LockError)
        self.assertEqual(internal.code, "INTERNAL")

    def test_the_classes_are_distinct(self):
        classes = [ResourceBusyError, LeaseLostError, InvalidArgumentError, UnavailableError]
        for a in classes:
            self.assertTrue(issubclass(a, LockError))
            for b in classes:
                if a is not b:
                    self.assertFalse(issubclass(a, b), (a, b))


if __name__ == "__main__":
    unittest.main()
