"""FileLock: the lock as a context manager over the file protocol alone, no service needed.

    with FileLock("/var/lib/mcp-lockd", "gateway", ttl=30, wait=60) as lease:
        ...  # lease.fencing_token, lease.lost

The lease file is renewed at about ttl / 3 on a background daemon thread, one
per lease, in place (file protocol version 3: one pwrite and fdatasync of its
own file; the guarded way when the file is not what its last write left). FileLockClient has the same shape as LockClient (lock, acquire,
list, close), so a program can use either.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, List, Optional

from . import file_protocol as protocol
from .errors import LeaseLostError, LockError
from .lease import HoldsOneLease, Lease, LockInfo, default_holder, utc_from_seconds

__all__ = ["FileLock", "FileLease", "FileLockClient"]

# After a renewal that failed for a reason other than loss (a busy guard, EACCES...), retry this
# soon, doubling up to the cap, until the lease's deadline.
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 1.0


class FileLease(Lease):
    """A lease held through the file protocol (see Lease for the attributes)."""

    def __init__(self, grant: protocol.Grant):
        super().__init__(
            resource=grant.resource,
            holder=grant.holder,
            fencing_token=grant.fencing_token,
            ttl=grant.ttl,
            acquired_at=utc_from_seconds(grant.acquired_at / 1000),
            metadata=grant.metadata,
        )
        self.lock_dir = grant.lock_dir
        self._grant = grant
        self._confirm_grant()
        self._stop = threading.Event()
        self._renewer = threading.Thread(
            target=self._renew_until_stopped, name=f"mcp_lockd-renew-{grant.resource}", daemon=True
        )
        self._renewer.start()

    def _confirm_grant(self) -> None:
        g = self._grant
        # The wall-clock expiry as counted from when `now` was read for the write, on the monotonic
        # clock: the file says g.expires_at, which is exactly now + ttl.
        self._confirm(g.deadline_monotonic, g.expires_at / 1000)

    def _renew_until_stopped(self) -> None:
        retry = RETRY_FIRST_S
        next_at = self._grant.confirmed_at_monotonic + self.ttl / 3
        while True:
            if self._stop.wait(max(0.0, min(next_at, self.lost.deadline) - time.monotonic())):
                return
            if self.lost.is_set():  # the deadline passed without a confirmed renewal
                return
            try:
                # Bounded by our own deadline: past it the lease counts as lost, so write nothing.
                protocol.renew(self._grant, give_up_at=self.lost.deadline)
            except LeaseLostError as err:
                if not self._stop.is_set():  # not a race with our own release
                    self.lost._mark(err.reason)
                return
            except LockError:
                next_at = time.monotonic() + retry
                retry = min(retry * 2, RETRY_MAX_S)
                continue
            except Exception:  # a bug must not leave the lease silently unrenewed
                self.lost._mark("unconfirmed")
                raise
            retry = RETRY_FIRST_S
            self._confirm_grant()
            next_at = self._grant.confirmed_at_monotonic + self.ttl / 3

    def release(self) -> None:
        with self._state_lock:
            if self._released:
                return
            self._released = True
        # Stop renewing first, so no renewal races the release (a renewal is bounded by the deadline).
        self._stop.set()
        if self._renewer is not threading.current_thread():
            self._renewer.join()
        was_lost = self.lost.is_set()
        self.lost._disarm()
        if not protocol.release(self._grant) and not was_lost:
            # The file was no longer ours: the lease had ended before (expired and taken, removed).
            self.lost._mark("expired")


class FileLock(HoldsOneLease):
    """`with FileLock(lock_dir, resource, ttl=30, wait=None) as lease:` acquires on entry, releases on exit.

    wait: None or 0 tries once; a number of seconds polls that long; math.inf waits without limit.
    Raises ResourceBusyError (holder, expires_at) when the resource stays held, InvalidArgumentError,
    UnavailableError (the lock dir cannot be used, or a guard stayed taken), CorruptFenceError.
    On exit, raises LeaseLostError if the lease was lost while the block ran.
    """

    def __init__(
        self,
        lock_dir: "str | os.PathLike[str]",
        resource: str,
        *,
        ttl: float = 30,
        wait: Optional[float] = None,
        holder: Optional[str] = None,
        metadata: Optional[Dict[str, str]] = None,
    ):
        self.lock_dir = os.fspath(lock_dir)
        self.resource = resource
        self.ttl = ttl
        self.wait = wait
        self.holder = holder
        self.metadata = metadata
        self.lease: Optional[FileLease] = None

    def acquire(self) -> FileLease:
        grant = protocol.acquire(
            self.lock_dir,
            self.resource,
            default_holder() if self.holder is None else self.holder,
            self.ttl,
            self.wait,
            self.metadata,
        )
        return FileLease(grant)


class FileLockClient:
    """The file protocol with LockClient's shape: `FileLockClient(lock_dir).lock("gateway", ttl=30)`."""

    def __init__(self, lock_dir: "str | os.PathLike[str]", *, holder: Optional[str] = None):
        self.lock_dir = os.fspath(lock_dir)
        self.holder = holder

    def lock(
        self,
        resource: str,
        *,
        ttl: float = 30,
        wait: Optional[float] = None,
        holder: Optional[str] = None,
        metadata: Optional[Dict[str, str]] = None,
    ) -> FileLock:
        return FileLock(
            self.lock_dir, resource, ttl=ttl, wait=wait, holder=holder or self.holder, metadata=metadata
        )

    def acquire(
        self,
        resource: str,
        *,
        ttl: float = 30,
        wait: Optional[float] = None,
        holder: Optional[str] = None,
        metadata: Optional[Dict[str, str]] = None,
    ) -> FileLease:
        return self.lock(resource, ttl=ttl, wait=wait, holder=holder, metadata=metadata).acquire()

    def list(self, resource_prefix: str = "") -> List[LockInfo]:
        """Resources held now (valid live lease files, and unreadable ones that still block)."""
        infos = []
        for state in protocol.list_states(self.lock_dir):
            if not state.resource.startswith(resource_prefix):
                continue
            if state.kind == "held" and state.document is not None:
                d = state.document
                acquired = protocol.parse_time(d["acquired_at"]) or 0.0
                metadata = d.get("metadata") or {}
                infos.append(
                    LockInfo(
                        resource=state.resource,
                        holder=d["holder"],
                        fencing_token=int(d["fencing_token"]),
                        acquired_at=utc_from_seconds(acquired / 1000),
                        expires_at=utc_from_seconds((state.blocked_until_ms or 0) / 1000),
                        ttl=float(d["ttl"]),
                        waiters=0,
                        state="held",
                        metadata=dict(metadata),
                    )
                )
            else:
                mtime = state.mtime_ms or 0.0
                infos.append(
                    LockInfo(
                        resource=state.resource,
                        holder="unknown",
                        fencing_token=0,
                        acquired_at=utc_from_seconds(mtime / 1000),
                        expires_at=utc_from_seconds((state.blocked_until_ms or 0) / 1000),
                        ttl=((state.blocked_until_ms or 0) - mtime) / 1000,
                        waiters=0,
                        state="unreadable",
                        metadata={"unreadable_reason": state.reason or ""},
                    )
                )
        return infos

    def close(self) -> None:
        """Nothing to close (leases are released by their own release() or block exit)."""

    def __enter__(self) -> "FileLockClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
