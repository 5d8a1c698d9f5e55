"""A foreign LockService client: grpcio with stubs generated from proto/mcplockd/v1/lock.proto.

    python_client.py <generated_stubs_dir> <host:port>

Runs one scripted session against the service and prints a JSON summary on
stdout for python-client.test.ts to check. Exits 2 if grpc is not installed.
"""

from __future__ import annotations

import json
import queue
import sys
import time

try:
    import grpc
    from google.protobuf import duration_pb2
except ImportError as err:  # the test turns this into a failure with the apt-get hint
    print(json.dumps({"error": f"cannot import grpc/protobuf: {err}"}))
    sys.exit(2)

RESOURCE = "py-grpc"
TIMEOUT = 10  # seconds, per call


def ts_ms(ts) -> float:
    return ts.seconds * 1000 + ts.nanos / 1e6


def rpc_error(call) -> dict:
    """Runs `call`, which must fail, and describes its status."""
    try:
        call()
    except grpc.RpcError as err:
        trailing = dict(err.trailing_metadata() or ())
        return {
            "code": err.code().name,
            "details": err.details(),
            "error_code": trailing.get("mcp-lockd-error-code"),
        }
    return {"code": "OK", "details": "", "error_code": None}


class KeepAliveStream:
    """One bidi KeepAlive stream: send a lease id, read its answer."""

    _END = object()

    def __init__(self, stub, pb):
        self._pb = pb
        self._requests: "queue.Queue[object]" = queue.Queue()
        self._responses = stub.KeepAlive(self._generate(), timeout=TIMEOUT * 3)

    def _generate(self):
        while True:
            item = self._requests.get()
            if item is self._END:
                return
            yield item

    def renew(self, lease_id: str):
        self._requests.put(self._pb.KeepAliveRequest(lease_id=lease_id))
        return next(self._responses)

    def close(self) -> int:
        """Half-closes the stream; returns how many extra responses arrived before the end."""
        self._requests.put(self._END)
        return sum(1 for _ in self._responses)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 64
    gen_dir, address = argv[1], argv[2]
    sys.path.insert(0, gen_dir)
    from mcplockd.v1 import lock_pb2 as pb  # noqa: E402  (generated at test time)
    from mcplockd.v1 import lock_pb2_grpc as pb_grpc  # noqa: E402

    summary: dict = {"grpc_version": grpc.__version__}
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        stub = pb_grpc.LockServiceStub(channel)

        granted = stub.Acquire(
            pb.AcquireRequest(
                resource=RESOURCE,
                holder="python-client",
                ttl=duration_pb2.Duration(seconds=5),
                metadata={"lang": "python"},
            ),
            timeout=TIMEOUT,
        ).lease
        lease_id = granted.lease_id
        summary["acquire"] = {
            "lease_id_length": len(lease_id),
            "resource": granted.resource,
            "holder": granted.holder,
            "fencing_token": granted.fencing_token,
            "acquired_at": ts_ms(granted.acquired_at),
            "expires_at": ts_ms(granted.expires_at),
            "ttl_seconds": granted.ttl.seconds + granted.ttl.nanos / 1e9,
            "metadata": dict(granted.metadata),
            "state": granted.state,
        }

        # Two renewals on one stream; the second a little later, so expires_at must move.
        stream = KeepAliveStream(stub, pb)
        renewals = []
        for _ in range(2):
            time.sleep(0.05)
            r = stream.renew(lease_id)
            renewals.append(
                {
                    "lease_id_matches": r.lease_id == lease_id,
                    "expired": r.expired,
                    "expires_at": ts_ms(r.expires_at),
                    "ttl_seconds": r.ttl.seconds + r.ttl.nanos / 1e9,
                }
            )
        summary["keepalive"] = renewals
        summary["keepalive_extra_responses"] = stream.close()

        listed = stub.ListLocks(pb.ListLocksRequest(resource_prefix=RESOURCE), timeout=TIMEOUT).locks
        summary["list"] = [
            {
                "resource": lock.resource,
                "holder": lock.holder,
                "lease_id": lock.lease_id,
                "fencing_token": lock.fencing_token,
                "expires_at": ts_ms(lock.expires_at),
                "state": lock.state,
                "waiters": lock.waiters,
            }
            for lock in listed
        ]

        summary["busy"] = rpc_error(
            lambda: stub.Acquire(pb.AcquireRequest(resource=RESOURCE, holder="python-other"), timeout=TIMEOUT)
        )

        summary["release"] = {"released": stub.Release(pb.ReleaseRequest(lease_id=lease_id), timeout=TIMEOUT).released}
        summary["release_again"] = rpc_error(
            lambda: stub.Release(pb.ReleaseRequest(lease_id=lease_id), timeout=TIMEOUT)
        )

        # A released lease is answered in-band on KeepAlive, and the stream stays usable.
        stream = KeepAliveStream(stub, pb)
        after = [stream.renew(lease_id), stream.renew(lease_id)]
        summary["keepalive_after_release"] = [{"expired": r.expired, "has_expires_at": r.HasField("expires_at")} for r in after]
        stream.close()

        summary["invalid_resource"] = rpc_error(
            lambda: stub.Acquire(pb.AcquireRequest(resource="../etc/passwd", holder="python-client"), timeout=TIMEOUT)
        )
        summary["invalid_ttl"] = rpc_error(
            lambda: stub.Acquire(
                pb.AcquireRequest(resource=RESOURCE, ttl=duration_pb2.Duration(seconds=7200)), timeout=TIMEOUT
            )
        )

    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
