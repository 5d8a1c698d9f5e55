"""One KeepAlive stream per LockClient, renewing all of its leases.

A daemon thread (the keeper) sends each lease's renewal at about ttl / 3
after the last confirmed one, over one bidirectional KeepAlive stream; a
second daemon thread reads that stream's answers. When the stream breaks
(the service restarted, the connection dropped, an answer is overdue) the
keeper opens a new one after a backoff (doubling, with jitter) and renews
every lease on it at once. With several replicas (endpoints.py) a broken
stream counts as its replica's failure: the new stream goes to the next
replica, at once, with the same lease ids (any replica serves any lease);
the backoff applies only once every replica has failed in a row. A lease
whose last confirmed expiry passes before a renewal is confirmed is lost
(LostEvent sees to it even if these threads are stalled). The threads end
when the client holds no leases.

A renewal answered with an error (KeepAliveResponse.error: the service could
not read or write that lease's file) is a failed try of that lease only, not a
loss: the lease still holds until its confirmed expiry and the failure may pass
(permissions fixed, space freed), so it is retried after a tenth of the ttl
instead of a third; it is lost if its confirmed expiry passes first. The other
leases on the stream are not affected.
"""

from __future__ import annotations

import collections
import logging
import math
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Deque, List, Optional, Set

import grpc

if TYPE_CHECKING:
    from .endpoints import Endpoint, Endpoints
    from .service_client import ServiceLease

_log = logging.getLogger("mcp_lockd")

_END = object()  # ends a stream's request iterator (half-close)


@dataclass
class _Sent:
    lease: "ServiceLease"
    at_monotonic: float
    at_wall: float  # seconds since the epoch


class _Stream:
    """One KeepAlive call, its request queue and the renewals sent on it and not yet answered."""

    def __init__(self, endpoint: "Endpoint", wait_for_ready: bool, renew_all: bool):
        self.endpoint = endpoint
        # Opened after a break: every lease is renewed at once, confirming it where it now lives.
        self.renew_all = renew_all
        self.requests: "queue.Queue[Any]" = queue.Queue()
        self.pending: Deque[_Sent] = collections.deque()
        self.call = endpoint.stub.KeepAlive(self._request_iterator(), wait_for_ready=wait_for_ready)

    def _request_iterator(self):
        while True:
            item = self.requests.get()
            if item is _END:
                return
            yield item

    def close(self) -> None:
        # Both, in this order. _END ends the request iterator, which grpcio runs on a thread of its
        # own per call: a cancel alone leaves that thread blocked in requests.get() for good, one
        # more thread per lock. The cancel ends the call at both ends at once, so no stream is left
        # counting against the service's --max-streams-per-connection. grpcio's C core did not
        # lose one in thousands of tries, even sent as the stream was opening, where grpc-js lost
        # the TypeScript client's (docs/client.md, "Many locks through one client").
        self.requests.put(_END)
        try:
            self.call.cancel()
        except Exception:  # already ended
            pass


class KeepAliveSession:
    def __init__(
        self,
        endpoints: "Endpoints",
        make_request: Callable[[str], Any],
        *,
        initial_backoff: float,
        max_backoff: float,
    ):
        self._endpoints = endpoints
        # Streams that broke since one was last answered: below the number of replicas, the next
        # one is tried at once.
        self._failures_in_row = 0
        self._make_request = make_request
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._backoff = initial_backoff
        self._cond = threading.Condition()
        self._leases: Set["ServiceLease"] = set()
        self._stream: Optional[_Stream] = None
        self._reconnect_at = 0.0
        # The last stream broke: the next one renews every lease at once. Not after a stream closed
        # because no lease was left: a lease acquired then was just granted.
        self._renew_all_on_open = False
        self._keeper: Optional[threading.Thread] = None
        self._closed = False
        # Counters for tests and diagnostics.
        self.streams_opened = 0
        self.renewals_confirmed = 0
        self.renewals_failed = 0
        # For tests and diagnostics: called as on_renewed(address, monotonic time) with the
        # keeper's lock held, after each confirmed renewal. Must not block.
        self.on_renewed: Optional[Callable[[str, float], None]] = None

    # ------------------------------------------------------------ called by leases and the client

    def add(self, lease: "ServiceLease") -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the LockClient is closed")
            self._leases.add(lease)
            if self._keeper is None:
                self._keeper = threading.Thread(target=self._keep, name="mcp_lockd-keepalive", daemon=True)
                self._keeper.start()
            self._cond.notify_all()

    def remove(self, lease: "ServiceLease") -> None:
        with self._cond:
            self._leases.discard(lease)
            self._cond.notify_all()

    def leases(self) -> List["ServiceLease"]:
        with self._cond:
            return list(self._leases)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._leases.clear()
            self._cond.notify_all()
            keeper = self._keeper
        if keeper is not None and keeper is not threading.current_thread():
            keeper.join(timeout=5)

    # ------------------------------------------------------------ the keeper thread

    def _keep(self) -> None:
        with self._cond:
            try:
                while self._step_locked():
                    pass
            finally:
                self._drop_stream_locked(None, quiet=True)
                self._renew_all_on_open = False
                self._keeper = None

    def _step_locked(self) -> bool:
        """One round of the keeper; False when it should end."""
        if self._closed or not self._leases:
            return False
        now = time.monotonic()
        for lease in list(self._leases):
            if lease.lost.is_set():  # its deadline passed without a confirmed renewal
                self._leases.discard(lease)
        if not self._leases:
            return False
        wake = math.inf
        if self._stream is None and now >= self._reconnect_at:
            self._open_stream_locked()
        stream = self._stream
        if stream is None:
            wake = self._reconnect_at
        else:
            in_flight = {id(sent.lease) for sent in stream.pending}
            renew_all, stream.renew_all = stream.renew_all, False
            for lease in self._leases:
                if id(lease) in in_flight:
                    continue
                if renew_all or now >= lease._renew_at:
                    stream.pending.append(_Sent(lease, time.monotonic(), time.time()))
                    stream.requests.put(self._make_request(lease._lease_id))
                    _log.debug('mcp_lockd: renewing the lease on "%s"', lease.resource)
                else:
                    wake = min(wake, lease._renew_at)
            if stream.pending:
                overdue_at = min(sent.at_monotonic + _answer_timeout(sent.lease.ttl) for sent in stream.pending)
                if now >= overdue_at:
                    self._drop_stream_locked("no answer to a renewal in time")
                    return True
                wake = min(wake, overdue_at)
        for lease in self._leases:
            wake = min(wake, lease.lost.deadline)
        self._cond.wait(None if wake == math.inf else max(0.0, wake - time.monotonic()))
        return True

    def _open_stream_locked(self) -> None:
        # One address: while the service is down the stream waits for it (see channel_state.py);
        # the leases' deadlines do not depend on it. Several: fail fast, so that a replica that is
        # down passes the stream on at once, until every one of them has failed.
        several = self._endpoints.size > 1
        wait_for_ready = not several or self._failures_in_row >= self._endpoints.size
        try:
            stream = _Stream(self._endpoints.current(), wait_for_ready, renew_all=self._renew_all_on_open)
        except Exception as err:  # the channel is closed or broken: retry later
            self._schedule_reconnect_locked(f"cannot open a KeepAlive stream: {err}")
            return
        self._stream = stream
        self._renew_all_on_open = False
        self.streams_opened += 1
        threading.Thread(target=self._read, args=(stream,), name="mcp_lockd-keepalive-reader", daemon=True).start()

    def _drop_stream_locked(self, why: Optional[str], quiet: bool = False) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        stream.close()
        if quiet:
            return
        self._renew_all_on_open = True
        why = why or "the KeepAlive stream ended"
        self._endpoints.failed(stream.endpoint)
        self._failures_in_row += 1
        if self._endpoints.size > 1 and self._failures_in_row < self._endpoints.size:
            self._reconnect_at = time.monotonic()
            _log.debug("mcp_lockd: %s (%s); moving to the next replica", why, stream.endpoint.address)
        else:
            self._schedule_reconnect_locked(why)

    def _schedule_reconnect_locked(self, why: str) -> None:
        delay = self._backoff * random.uniform(0.5, 1.0)
        self._backoff = min(self._backoff * 2, self._max_backoff)
        self._reconnect_at = time.monotonic() + delay
        # Never the lease ids: they are capabilities.
        _log.debug("mcp_lockd: %s; reconnecting in %.3f s", why, delay)

    # ------------------------------------------------------------ the reader thread (one per stream)

    def _read(self, stream: _Stream) -> None:
        why = "the service ended the KeepAlive stream"
        try:
            for response in stream.call:
                with self._cond:
                    if self._stream is not stream:
                        return
                    self._answered_locked(stream, response)
                    self._cond.notify_all()
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None  # type: ignore[attr-defined]
            details = err.details() if hasattr(err, "details") else ""  # type: ignore[attr-defined]
            why = f"the KeepAlive stream broke ({getattr(code, 'name', code)}: {details})"
        except Exception as err:  # noqa: BLE001 - any failure of the stream means: reconnect
            why = f"the KeepAlive stream failed ({type(err).__name__})"
        with self._cond:
            if self._stream is stream:
                self._drop_stream_locked(why)
                self._cond.notify_all()

    def _answered_locked(self, stream: _Stream, response: Any) -> None:
        # Each answer names its lease. Answers for different leases may come in another order than
        # their requests; those for one lease keep theirs, so it answers that lease's oldest request.
        sent = next((s for s in stream.pending if s.lease._lease_id == response.lease_id), None)
        if sent is None:
            return
        stream.pending.remove(sent)
        self._backoff = self._initial_backoff
        self._failures_in_row = 0
        lease = sent.lease
        if lease not in self._leases:
            return  # released or lost meanwhile
        if response.HasField("error"):
            self.renewals_failed += 1
            lease._renew_at = time.monotonic() + lease.ttl * _RETRY_AFTER_FAILED_RENEWAL
            _log.warning(
                'mcp_lockd: renewing the lease on "%s" failed (%s), retrying: %s',
                lease.resource,
                _code_name(response.error.code),
                response.error.message,
            )
            return
        if response.expired:
            self._leases.discard(lease)
            lease.lost._mark("expired")
            return
        self.renewals_confirmed += 1
        ttl = response.ttl.seconds + response.ttl.nanos / 1e9
        expires = response.expires_at.seconds + response.expires_at.nanos / 1e9
        lease._renewed(sent.at_monotonic, sent.at_wall, ttl, expires)
        if self.on_renewed is not None:
            self.on_renewed(stream.endpoint.address, time.monotonic())


# After a renewal the service could not do, the next try comes this share of the ttl later.
_RETRY_AFTER_FAILED_RENEWAL = 0.1


def _code_name(code: int) -> str:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return str(code)


def _answer_timeout(ttl: float) -> float:
    """How long a renewal may stay unanswered before the stream counts as broken."""
    return min(max(ttl / 6, 1.0), 10.0)
