"""Whether the client is connected to the service, and reconnecting promptly.

grpcio (1.51, Debian's) recovers slowly from a restart of the service when
calls fail fast: they keep failing with the last connection error for
seconds after the service is back. Calls made with wait_for_ready=True
reconnect within the channel's backoff instead, but on a service that is
down they would wait for their whole deadline. Hence:

- while the last call went through, calls fail fast (a dead service is
  reported at once);
- otherwise (at first, and after a failure) a cheap probe waits at most
  connect_timeout for the channel, and the call then waits for a ready
  channel. With several replicas (endpoints.py) each is first probed
  without waiting, so that one that is down costs no time.

(A watch on the channel's connectivity, channel.subscribe or
channel_ready_future, would do as well, but starts a polling thread that
grpcio does not stop cleanly when the channel is closed soon after:
"ValueError: Cannot invoke RPC: Channel closed!".)
"""

from __future__ import annotations

import grpc

__all__ = ["ChannelState"]

# Served by mcp-lockd next to LockService. Any answer, even UNIMPLEMENTED from another server,
# proves a connection; an empty message is a valid HealthCheckRequest (service "").
_PROBE_METHOD = "/grpc.health.v1.Health/Check"
_NO_CONNECTION = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class ChannelState:
    def __init__(self, channel: grpc.Channel):
        # No (de)serializers: the request and the answer stay bytes.
        self._probe = channel.unary_unary(_PROBE_METHOD)
        self.connected = False

    def wait_ready(self, timeout: float, wait: bool = True) -> bool:
        """True if connected (now, or within `timeout` seconds). With wait=False, a connection
        that fails (refused: a replica that is down) answers False at once instead of waiting
        for the channel's next try."""
        if self.connected:
            return True
        try:
            self._probe(b"", timeout=timeout, wait_for_ready=wait)
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None  # type: ignore[attr-defined]
            if code in _NO_CONNECTION:
                return False
        except ValueError:  # the channel was closed
            return False
        self.connected = True
        return True

    def failed(self, err: BaseException) -> None:
        """A call failed: after a connection failure, the next call probes first."""
        code = err.code() if isinstance(err, grpc.RpcError) and hasattr(err, "code") else None  # type: ignore[attr-defined]
        if code in _NO_CONNECTION or not isinstance(err, grpc.RpcError):
            self.connected = False

    def close(self) -> None:
        self.connected = False
