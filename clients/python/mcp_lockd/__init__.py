"""mcp_lockd: locks from mcp-lockd, over its gRPC service or through its file protocol alone.

    from mcp_lockd import LockClient, FileLock

    with LockClient("127.0.0.1:50051").lock("gateway", ttl=30, wait=60) as lease:
        ...  # pass lease.fencing_token downstream; stop when lease.lost is set

    with FileLock(".mcp-gateway", "gateway", ttl=30, wait=60) as lease:
        ...  # the same, without the service (docs/protocol.md)

LockClient needs grpcio and protobuf; it is imported on first use, so FileLock
and everything else work with the standard library alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AccessDeniedError,
    CorruptFenceError,
    GuardTimeoutError,
    InvalidArgumentError,
    LeaseLostError,
    LockError,
    ResourceBusyError,
    UnavailableError,
    WatcherTooSlowError,
)
from .file_lock import FileLease, FileLock, FileLockClient
from .lease import Lease, LockInfo
from .lock_event import LockEvent
from .lost_event import LostEvent

if TYPE_CHECKING:
    from .service_client import LockClient, ServiceLease, ServiceLock

__version__ = "0.1.0"

__all__ = [
    "LockClient",
    "ServiceLock",
    "ServiceLease",
    "FileLock",
    "FileLockClient",
    "FileLease",
    "Lease",
    "LockInfo",
    "LockEvent",
    "LostEvent",
    "LockError",
    "ResourceBusyError",
    "LeaseLostError",
    "InvalidArgumentError",
    "UnavailableError",
    "WatcherTooSlowError",
    "GuardTimeoutError",
    "CorruptFenceError",
    "AccessDeniedError",
]

_GRPC_NAMES = ("LockClient", "ServiceLock", "ServiceLease")


def __getattr__(name: str) -> Any:
    if name in _GRPC_NAMES:
        from . import service_client  # needs grpcio; an ImportError here names what is missing

        return getattr(service_client, name)
    raise AttributeError(f"module 'mcp_lockd' has no attribute {name!r}")
