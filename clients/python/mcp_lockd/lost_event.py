"""`lease.lost`: a threading.Event that also counts as set once the lease's
last confirmed expiry has passed on the monotonic clock.

The deadline is checked by whoever looks (is_set, wait), so `lost` is never
late, even when the background thread that renews the lease is stalled (a
blocked disk, a long GIL hold, a stopped stream).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Optional

__all__ = ["LostEvent"]


class LostEvent(threading.Event):
    """Set when the lease is lost. `reason` says why (see LeaseLostError.reason), None while held."""

    def __init__(self) -> None:
        super().__init__()
        self._deadline = math.inf  # time.monotonic() at which the lease counts as lost
        self._reason: Optional[str] = None
        self._reason_lock = threading.Lock()

    @property
    def reason(self) -> Optional[str]:
        self.is_set()  # a passed deadline sets the reason
        return self._reason

    @property
    def deadline(self) -> float:
        """The monotonic time at which the lease counts as lost unless renewed first."""
        return self._deadline

    def is_set(self) -> bool:
        if super().is_set():
            return True
        if time.monotonic() >= self._deadline:
            self._mark("unconfirmed")
            return True
        return False

    isSet = is_set  # the old camelCase alias of threading.Event

    def wait(self, timeout: Optional[float] = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.is_set():
                return True
            now = time.monotonic()
            if end is not None and now >= end:
                return False
            # Wake at the deadline (which renewals only move later), or at the caller's timeout.
            step = min(self._deadline, math.inf if end is None else end) - now
            if super().wait(None if step == math.inf else max(step, 0.0)):
                return True

    # ------------------------------------------------------------ for the lease's owner

    def _extend(self, deadline: float) -> None:
        """A renewal was confirmed: the lease is held until `deadline` (never moves it earlier)."""
        if deadline > self._deadline or self._deadline == math.inf:
            self._deadline = deadline

    def _disarm(self) -> None:
        """The lease was released: its deadline no longer matters."""
        self._deadline = math.inf

    def _mark(self, reason: str) -> bool:
        """Sets the event with `reason`; True if this call set it."""
        with self._reason_lock:
            if self._reason is not None:
                return False
            self._reason = reason
        super().set()
        return True

    def set(self) -> None:  # pragma: no cover - only for code that treats it as a plain Event
        self._mark("expired")
