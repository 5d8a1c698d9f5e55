"""Typed errors of mcp_lockd, the same for the gRPC client and the file protocol.

They mirror the TypeScript client (src/client/errors.ts): callers branch on the
class. `code` names the gRPC status that describes the error best, also for
errors of the file protocol, which never talks gRPC.
"""

from __future__ import annotations

import datetime as _dt
from typing import Optional

__all__ = [
    "LockError",
    "ResourceBusyError",
    "LeaseLostError",
    "InvalidArgumentError",
    "UnavailableError",
    "GuardTimeoutError",
    "CorruptFenceError",
    "AccessDeniedError",
    "WatcherTooSlowError",
]


class LockError(Exception):
    """Base of every error mcp_lockd raises on purpose."""

    code: str = "UNKNOWN"

    def __init__(self, message: str, *, code: Optional[str] = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class ResourceBusyError(LockError):
    """The resource is held by someone else (tried once, or the wait ran out).

    `holder` and `expires_at` (an aware UTC datetime) are None when unknown.
    """

    code = "ABORTED"

    def __init__(
        self,
        message: str,
        resource: str,
        holder: Optional[str] = None,
        expires_at: Optional[_dt.datetime] = None,
    ):
        super().__init__(message)
        self.resource = resource
        self.holder = holder
        self.expires_at = expires_at


class LeaseLostError(LockError):
    """The lease is gone: stop using the resource.

    `reason` is "expired" when the service or the lease file said the lease is
    no longer ours, "unconfirmed" when no renewal was confirmed before the last
    confirmed expiry, "closed" when the client was closed while holding it.
    """

    def __init__(self, message: str, resource: Optional[str] = None, reason: str = "expired"):
        super().__init__(message, code="NOT_FOUND" if reason == "expired" else "UNAVAILABLE")
        self.resource = resource
        self.reason = reason


class InvalidArgumentError(LockError, ValueError):
    """A malformed argument or one over its limit; the message names the field and the limit."""

    code = "INVALID_ARGUMENT"

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.field = field


class AccessDeniedError(LockError):
    """The service refused the caller (services with --auth-file): no or unknown credentials
    (code UNAUTHENTICATED), or its principal may not do this (PERMISSION_DENIED; the message
    names the resource and the action)."""

    code = "PERMISSION_DENIED"


class UnavailableError(LockError):
    """The service cannot be reached, is starting or stopping, or the lock dir cannot be used. Retryable."""

    code = "UNAVAILABLE"


class GuardTimeoutError(UnavailableError):
    """File protocol: a resource's guard directory stayed taken (and fresh) too long."""


class CorruptFenceError(LockError):
    """File protocol: the fencing counter cannot be read (a directory not holding exactly one file
    named by a token, or a version-1 counter file that does not parse), so no token can be issued safely.

    An operator repairs it with a value at least as high as any token issued.
    """

    code = "INTERNAL"


class WatcherTooSlowError(LockError):
    """A watch read too slowly and the service ended it; open a new one (it starts with a fresh snapshot)."""

    code = "RESOURCE_EXHAUSTED"
