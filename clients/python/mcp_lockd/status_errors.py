"""The one place where gRPC statuses become mcp_lockd's typed errors (as src/client/status-errors.ts)."""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any, Optional, Tuple

import grpc

from .errors import (
    AccessDeniedError,
    InvalidArgumentError,
    LeaseLostError,
    LockError,
    ResourceBusyError,
    UnavailableError,
    WatcherTooSlowError,
)

# Trailing metadata the service sets (src/grpc/status-map.ts). The holder is UTF-8, hence "-bin".
HOLDER_KEY = "mcp-lockd-holder-bin"
EXPIRES_AT_KEY = "mcp-lockd-expires-at"
FIELD_KEY = "mcp-lockd-field"
ERROR_CODE_KEY = "mcp-lockd-error-code"

# The message of an older service: resource "R" is held by "H" until 2026-01-09T14:30:00.000Z ...
_BUSY_MESSAGE = re.compile(r'is held by "(.*)" until (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)')
_FIELD_PREFIX = re.compile(r"^([\w.\[\]]+):")


def parse_iso(text: str) -> Optional[_dt.datetime]:
    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


def _trailing(err: grpc.RpcError) -> dict:
    try:
        pairs = err.trailing_metadata() or ()  # type: ignore[attr-defined]
    except Exception:
        return {}
    out: dict = {}
    for item in pairs:
        key, value = item[0], item[1]
        out.setdefault(key, value)
    return out


def busy_details(err: grpc.RpcError, message: str) -> Tuple[Optional[str], Optional[_dt.datetime]]:
    """The holder and expiry from trailing metadata, else from the message."""
    trailing = _trailing(err)
    holder_raw: Any = trailing.get(HOLDER_KEY)
    expires_raw: Any = trailing.get(EXPIRES_AT_KEY)
    if holder_raw is not None or expires_raw is not None:
        if isinstance(holder_raw, bytes):
            holder: Optional[str] = holder_raw.decode("utf-8", "replace")
        else:
            holder = holder_raw
        expires = parse_iso(expires_raw) if isinstance(expires_raw, str) else None
        return holder, expires
    match = _BUSY_MESSAGE.search(message)
    if match is None:
        return None, None
    return match.group(1), parse_iso(match.group(2))


def error_from_rpc(err: grpc.RpcError, resource: Optional[str] = None) -> LockError:
    code = err.code() if hasattr(err, "code") else None  # type: ignore[attr-defined]
    message = (err.details() if hasattr(err, "details") else None) or str(err)  # type: ignore[attr-defined]
    if code == grpc.StatusCode.ABORTED:
        holder, expires_at = busy_details(err, message)
        return ResourceBusyError(message, resource or "", holder, expires_at)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field = _trailing(err).get(FIELD_KEY)
        if not isinstance(field, str):
            match = _FIELD_PREFIX.match(message)
            field = match.group(1) if match else None
        return InvalidArgumentError(message, field)
    if code == grpc.StatusCode.UNAVAILABLE:
        return UnavailableError(message)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return UnavailableError(f"the service did not answer in time ({message})")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # Also the service's limits (waiters, leases, streams): only a Watch that fell behind is WatcherTooSlowError.
        if _trailing(err).get(ERROR_CODE_KEY) == "WATCHER_TOO_SLOW" or "the watcher fell behind" in message:
            return WatcherTooSlowError(message)
        return LockError(message, code="RESOURCE_EXHAUSTED")
    if code == grpc.StatusCode.NOT_FOUND:
        return LeaseLostError(message, resource, "expired")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return AccessDeniedError(message, code=code.name)
    return LockError(message, code=code.name if code is not None else "UNKNOWN")
