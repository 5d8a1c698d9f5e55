"""What LockClient.watch() yields: one change to a lock (or a line of the opening snapshot)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class LockEvent:
    """One event of a watch. Lease ids never appear.

    A watch opens with one "HELD" event per held resource and one
    "SNAPSHOT_COMPLETE", then sends "ACQUIRED", "RELEASED", "EXPIRED",
    "HANDED_OVER", "FORCE_RELEASED", "WAITERS_CHANGED" and "RENEWED" events in
    the order they happen.
    """

    type: str
    resource: str  # "" for SNAPSHOT_COMPLETE
    state: str  # "held", "unreadable", or "free" after RELEASED / EXPIRED
    holder: str  # "" when free
    fencing_token: int  # 0 without a readable lease
    acquired_at: Optional[_dt.datetime]  # service clock, aware UTC; None when free
    expires_at: Optional[_dt.datetime]
    ttl: Optional[float]  # seconds
    waiters: int
    time: _dt.datetime  # when the service saw it
    previous_holder: Optional[str] = None  # HANDED_OVER: who held it before
    previous_fencing_token: Optional[int] = None
