"""What both clients hand out: a Lease (a held lock) and LockInfo (a listing entry).

The gRPC client (ServiceLease) and the file protocol (FileLease) share this
shape, so code written against one runs against the other.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from .errors import LeaseLostError, LockError
from .lost_event import LostEvent

__all__ = ["Lease", "LockInfo"]

_log = logging.getLogger("mcp_lockd")

# Stop counting on a lease this long before its last confirmed expiry
# (docs/protocol.md section 7: "minus a safety margin").
SAFETY_MARGIN_S = 0.1


def utc_from_seconds(seconds: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class LockInfo:
    """A held resource as listed. Lease ids are never listed."""

    resource: str
    holder: str
    fencing_token: int  # 0 only for an unreadable lease file
    acquired_at: _dt.datetime
    expires_at: _dt.datetime
    ttl: float  # seconds
    waiters: int  # callers in the service's queue (always 0 for the file protocol)
    state: str  # "held", or "unreadable" for a lease file that cannot be parsed
    metadata: Dict[str, str] = field(default_factory=dict)


class Lease:
    """A lock held as a lease, renewed in the background until released.

    Use it as a context manager (`with client.lock(...) as lease:`), or call
    release() yourself. Attributes:

    - `resource`, `holder`, `ttl` (seconds), `metadata`
    - `fencing_token`: strictly increasing per resource; pass it to downstream
      systems so they can refuse a holder that has lost the lock.
    - `acquired_at`, `expires_at`: aware UTC datetimes; `expires_at` is the last
      confirmed expiry on this machine's clock, counted from before the renewal
      was sent, so it never overstates what is left.
    - `lost`: a threading.Event, set when a renewal says the lease is gone, or
      once `expires_at` (minus a 0.1 s margin) passes without a confirmed
      renewal, whichever comes first, and never later. `lost.reason` says why.
    """

    def __init__(
        self,
        *,
        resource: str,
        holder: str,
        fencing_token: int,
        ttl: float,
        acquired_at: _dt.datetime,
        metadata: Optional[Dict[str, str]] = None,
    ):
        self.resource = resource
        self.holder = holder
        self.fencing_token = int(fencing_token)
        self.ttl = float(ttl)
        self.acquired_at = acquired_at
        self.metadata: Dict[str, str] = dict(metadata or {})
        self.lost = LostEvent()
        self._expires_at_wall = 0.0  # seconds since the epoch, this machine's clock
        self._released = False
        self._state_lock = threading.Lock()

    # ------------------------------------------------------------ public

    @property
    def expires_at(self) -> _dt.datetime:
        return utc_from_seconds(self._expires_at_wall)

    @property
    def released(self) -> bool:
        return self._released

    def remaining(self) -> float:
        """Seconds until the lease counts as lost (0 once lost or released)."""
        if self._released or self.lost.is_set():
            return 0.0
        return max(0.0, self.lost.deadline - time.monotonic())

    def check(self) -> None:
        """Raises LeaseLostError if the lease is lost (call it before each step that needs the lock)."""
        if self.lost.is_set():
            raise self._lost_error()
        if self._released:
            raise LockError(f'the lease on "{self.resource}" was released')

    def release(self) -> None:
        """Ends the lease now. Safe to call twice. Raises UnavailableError when it could not be
        released (it then ends by itself at its expiry); never raises for a lease already lost."""
        raise NotImplementedError

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        lost_during_block = self.lost.is_set()
        try:
            self.release()
        except LockError as err:
            # The lease ends by itself at its expiry; failing a block whose work was done under a
            # live lease would only hide that. Logged without the lease id (a capability).
            _log.warning('mcp_lockd: could not release the lease on "%s": %s', self.resource, err)
        if exc_type is None and (lost_during_block or self.lost.is_set()):
            # The block finished, but not (all of it) under the lock: make that impossible to miss.
            raise self._lost_error()

    def __repr__(self) -> str:
        # Never the lease id: it is a capability for Release and KeepAlive.
        state = "released" if self._released else ("lost" if self.lost.is_set() else "held")
        return (
            f"<{type(self).__name__} resource={self.resource!r} holder={self.holder!r} "
            f"fencing_token={self.fencing_token} expires_at={self.expires_at.isoformat()} {state}>"
        )

    # ------------------------------------------------------------ for the implementations

    def _confirm(self, deadline_monotonic: float, expires_at_wall: float) -> None:
        """A grant or renewal was confirmed: held until `expires_at_wall` (minus the margin)."""
        if self.lost.is_set():
            return  # once lost, always lost
        self.lost._extend(deadline_monotonic - SAFETY_MARGIN_S)
        self._expires_at_wall = max(self._expires_at_wall, expires_at_wall)

    def _lost_error(self) -> LeaseLostError:
        reason = self.lost.reason or "expired"
        why = {
            "expired": "the lease is gone (expired, released elsewhere, or its lease file was replaced or removed)",
            "unconfirmed": f"no renewal was confirmed before its expiry at {self.expires_at.isoformat()}",
            "closed": "the client was closed while holding it",
        }.get(reason, reason)
        return LeaseLostError(
            f'lost the lock on "{self.resource}" (fencing token {self.fencing_token}): {why}',
            self.resource,
            reason,
        )


class HoldsOneLease:
    """`with` support shared by FileLock and ServiceLock: acquire() on entry, the lease's own
    exit (release, and LeaseLostError if it was lost meanwhile) on exit. Not reentrant."""

    resource: str
    lease: Optional[Lease]

    def acquire(self) -> Lease:
        raise NotImplementedError

    def __enter__(self) -> Any:
        if self.lease is not None and not self.lease.released:
            raise RuntimeError(f'this {type(self).__name__} already holds "{self.resource}"; it is not reentrant')
        self.lease = self.acquire()
        return self.lease

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.__exit__(exc_type, exc, tb)
