"""LockClient: the mcp-lockd gRPC service as a context manager.

    with LockClient("127.0.0.1:50051").lock("gateway", ttl=30, wait=60) as lease:
        ...  # lease.fencing_token, lease.lost

Needs grpcio and protobuf (Debian: python3-grpcio, python3-protobuf).
"""

from __future__ import annotations

import atexit
import math
import os
import threading
import time
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar, Union

import grpc
from google.protobuf import duration_pb2

from ._gen import lock_pb2 as pb
from ._gen import lock_pb2_grpc as pb_grpc
from .bearer_token import BearerTokenInterceptor
from .endpoints import Endpoint, Endpoints, parse_addresses
from .errors import InvalidArgumentError, LeaseLostError, LockError, UnavailableError
from .file_protocol import check_wait
from .keepalive import KeepAliveSession
from .lease import HoldsOneLease, Lease, LockInfo, default_holder, utc_from_seconds
from .lock_event import LockEvent
from .status_errors import error_from_rpc

__all__ = ["LockClient", "ServiceLock", "ServiceLease", "DEFAULT_ADDRESS"]

T = TypeVar("T")

DEFAULT_ADDRESS = "127.0.0.1:50051"
# The service's limit on wait_timeout; wait=math.inf asks for it.
MAX_WAIT_S = 24 * 3600
# How long a unary call may take on top of any waiting it asks for.
DEFAULT_TIMEOUT_S = 10.0
# How long a call waits for a connection to the service before UnavailableError.
DEFAULT_CONNECT_TIMEOUT_S = 5.0
# The same at close() and interpreter exit, per lease still held.
CLOSE_CONNECT_TIMEOUT_S = 1.0

# The channel's own reconnection, which the KeepAlive stream depends on: gRPC's default backoff
# grows to 120 s, far longer than a lease lives; keep it near the stream's own backoff instead.
# (Not grpc.min_reconnect_backoff_ms: gRPC C-core also uses it as the connect timeout, and a small
# one aborts every handshake with a service that is still starting: "tcp handshaker shutdown".)
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)

_open_clients: "weakref.WeakSet[LockClient]" = weakref.WeakSet()


def _close_open_clients() -> None:
    # At interpreter exit: release what is still held and stop the threads, so the exit neither
    # hangs on the channel nor leaves leases to expire by ttl.
    for client in list(_open_clients):
        try:
            client.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_close_open_clients)


def _shut_down(session: KeepAliveSession, endpoints: Endpoints) -> None:
    """Stops the KeepAlive thread and closes the channels (at close(), or when the client is freed)."""
    session.close()
    endpoints.close()


def _tls_credentials(tls: Dict[str, Union[bytes, str]]) -> grpc.ChannelCredentials:
    unknown = set(tls) - {"ca", "cert", "key"}
    if unknown:
        raise InvalidArgumentError(f"tls: unknown key(s) {sorted(unknown)}; expected ca, cert, key", "tls")
    if ("cert" in tls) != ("key" in tls):
        raise InvalidArgumentError("tls: cert and key go together (a client certificate and its key)", "tls")

    def pem(name: str) -> Optional[bytes]:
        value = tls.get(name)
        return value.encode("ascii") if isinstance(value, str) else value

    return grpc.ssl_channel_credentials(root_certificates=pem("ca"), private_key=pem("key"), certificate_chain=pem("cert"))


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = math.floor(seconds)
    return duration_pb2.Duration(seconds=int(whole), nanos=int(round((seconds - whole) * 1e9)))


def _seconds(message: Any) -> float:
    return message.seconds + message.nanos / 1e9


def _event_from(event: Any) -> LockEvent:
    """The wire's LockEvent as the Python one (times as aware UTC datetimes, ttl in seconds)."""
    has_lease = event.HasField("acquired_at")
    handed_over = event.type == pb.LockEvent.HANDED_OVER
    return LockEvent(
        type=pb.LockEvent.Type.Name(event.type) if event.type in pb.LockEvent.Type.values() else "UNKNOWN",
        resource=event.resource,
        state=event.state,
        holder=event.holder,
        fencing_token=event.fencing_token,
        acquired_at=utc_from_seconds(_seconds(event.acquired_at)) if has_lease else None,
        expires_at=utc_from_seconds(_seconds(event.expires_at)) if event.HasField("expires_at") else None,
        ttl=_seconds(event.ttl) if event.HasField("ttl") else None,
        waiters=event.waiters,
        time=utc_from_seconds(_seconds(event.time)),
        previous_holder=event.previous_holder if handed_over else None,
        previous_fencing_token=event.previous_fencing_token if handed_over else None,
    )


class ServiceLease(Lease):
    """A lease granted by the service (see Lease for the attributes)."""

    def __init__(self, client: "LockClient", granted: Any, sent_monotonic: float, sent_wall: float, waited: bool):
        ttl = _seconds(granted.ttl)
        super().__init__(
            resource=granted.resource,
            holder=granted.holder,
            fencing_token=granted.fencing_token,
            ttl=ttl,
            acquired_at=utc_from_seconds(_seconds(granted.acquired_at)),
            metadata=dict(granted.metadata),
        )
        self._client = client
        self._lease_id = granted.lease_id
        expires = _seconds(granted.expires_at)
        if waited:
            # Granted at some moment between sending and now: count from now, by the shared wall
            # clock, and never more than one ttl.
            base_monotonic, base_wall = time.monotonic(), time.time()
        else:
            # Try-once: granted after it was sent, so the ttl counted from sending is safe.
            base_monotonic, base_wall = sent_monotonic, sent_wall
        remaining = min(ttl, expires - base_wall)
        self._confirm(base_monotonic + remaining, base_wall + remaining)
        self._renew_at = base_monotonic + ttl / 3

    @property
    def lease_id(self) -> str:
        """The lease id: a capability for Release and KeepAlive. Never log it."""
        return self._lease_id

    def _renewed(self, sent_monotonic: float, sent_wall: float, ttl: float, expires_wall: float) -> None:
        """A KeepAlive answer confirmed a renewal sent at `sent_*` (called by the keeper)."""
        remaining = min(ttl, expires_wall - sent_wall)
        self._confirm(sent_monotonic + remaining, sent_wall + remaining)
        self._renew_at = sent_monotonic + ttl / 3

    def release(self) -> None:
        self._release(self._client.connect_timeout)

    def _release(self, connect_timeout: float) -> None:
        with self._state_lock:
            if self._released:
                return
            self._released = True
        self._client._session.remove(self)
        was_lost = self.lost.is_set()
        self.lost._disarm()
        request = pb.ReleaseRequest(lease_id=self._lease_id)
        try:
            self._client._call(
                "release",
                lambda stub, wait_for_ready: stub.Release(request, timeout=self._client.timeout, wait_for_ready=wait_for_ready),
                self.resource,
                connect_timeout,
            )
        except LeaseLostError:
            # NOT_FOUND: the lease had ended before (expired, or its lease file was removed).
            if not was_lost:
                self.lost._mark("expired")
        except LockError:
            if not was_lost:  # nothing more to say about a lease already lost
                raise


class ServiceLock(HoldsOneLease):
    """What LockClient.lock() returns (FileLock's counterpart): acquires on entry, releases on exit."""

    def __init__(self, client: "LockClient", resource: str, kwargs: Dict[str, Any]):
        self._client = client
        self.resource = resource
        self._kwargs = kwargs
        self.lease: Optional[ServiceLease] = None

    def acquire(self) -> ServiceLease:
        return self._client.acquire(self.resource, **self._kwargs)


class LockClient:
    """A client of the mcp-lockd gRPC service.

    address: host:port, or several replicas separated by commas ("a:50051,b:50051"): calls go to
      the first and move to the next when it is unavailable; default MCP_LOCKD_ADDRESS, else
      127.0.0.1:50051.
    timeout: seconds a call may take, on top of any waiting it asks for.
    connect_timeout: seconds a call waits for a connection (to any replica) before UnavailableError.
    tls: {"ca": PEM, "cert": PEM, "key": PEM} (bytes or str; each optional): TLS to the service,
        trusting `ca` (default: the system's CAs), with a client certificate for mutual TLS.
    token: a bearer token sent on every call (services with --auth-file).
    All leases of a client are renewed over one KeepAlive stream by one daemon thread; with
    several replicas the stream moves to the next when its replica fails, keeping the leases.
    """

    def __init__(
        self,
        address: Optional[str] = None,
        *,
        holder: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        credentials: Optional[grpc.ChannelCredentials] = None,
        tls: Optional[Dict[str, Union[bytes, str]]] = None,
        token: Optional[str] = None,
        reconnect_initial_delay: float = 0.1,
        reconnect_max_delay: float = 2.0,
    ):
        self.address = address or os.environ.get("MCP_LOCKD_ADDRESS") or DEFAULT_ADDRESS
        self.addresses = parse_addresses(self.address)
        self.holder = holder
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        if credentials is None and tls is not None:
            credentials = _tls_credentials(tls)

        def make_channel(target: str) -> grpc.Channel:
            if credentials is None:
                return grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
            return grpc.secure_channel(target, credentials, options=_CHANNEL_OPTIONS)

        def make_stub(channel: grpc.Channel) -> Any:
            calls = channel if token is None else grpc.intercept_channel(channel, BearerTokenInterceptor(token))
            return pb_grpc.LockServiceStub(calls)

        self._endpoints = endpoints = Endpoints(self.addresses, make_channel, make_stub)
        # The session must not refer to the client, so that a client nobody refers to any more
        # (`LockClient(address).lock(...)` inline) is freed at once, closing its channels.
        self._session = KeepAliveSession(
            endpoints,
            lambda lease_id: pb.KeepAliveRequest(lease_id=lease_id),
            initial_backoff=reconnect_initial_delay,
            max_backoff=reconnect_max_delay,
        )
        self._shutdown = weakref.finalize(self, _shut_down, self._session, endpoints)
        self._shutdown.atexit = False  # at exit, _close_open_clients closes it (releasing leases first)
        self._closing = False
        self._closed = False
        self._close_lock = threading.Lock()
        _open_clients.add(self)

    def __repr__(self) -> str:
        return f"<LockClient address={self.address!r}{' closed' if self._closed else ''}>"

    # ------------------------------------------------------------ locks

    def lock(
        self,
        resource: str,
        *,
        ttl: float = 30,
        wait: Optional[float] = None,
        holder: Optional[str] = None,
        metadata: Optional[Dict[str, str]] = None,
    ) -> ServiceLock:
        """`with client.lock("gateway", ttl=30, wait=60) as lease:` acquires on entry, releases on exit.

        wait: None or 0 tries once; seconds to wait in the service's FIFO queue; math.inf for the
        service's maximum (24 h). Raises ResourceBusyError, InvalidArgumentError, UnavailableError;
        on exit, LeaseLostError if the lease was lost while the block ran.
        """
        return ServiceLock(self, resource, {"ttl": ttl, "wait": wait, "holder": holder, "metadata": metadata})

    def acquire(
        self,
        resource: str,
        *,
        ttl: float = 30,
        wait: Optional[float] = None,
        holder: Optional[str] = None,
        metadata: Optional[Dict[str, str]] = None,
    ) -> ServiceLease:
        """Acquires `resource` and returns the lease, renewed until its release() (or block exit)."""
        if self._closing:
            raise LockError("the LockClient is closed")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl <= 0:
            raise InvalidArgumentError(f"ttl: {ttl!r} must be a positive number of seconds (1 to 3600)", "ttl")
        wait_s = min(check_wait(wait), MAX_WAIT_S)
        holder_name = holder if holder is not None else (self.holder if self.holder is not None else default_holder())
        request = pb.AcquireRequest(
            resource=resource,
            holder=holder_name,
            ttl=_duration(ttl),
            metadata=dict(metadata or {}),
        )
        if wait_s > 0:
            request.wait_timeout.CopyFrom(_duration(wait_s))
        sent = (0.0, 0.0)

        started = time.monotonic()

        def invoke(stub: Any, wait_for_ready: bool) -> Any:
            nonlocal sent
            if wait_s > 0 and sent != (0.0, 0.0):
                # Failing over: the wait goes on at the next replica for what is left of it.
                left = max(0.0, wait_s - (time.monotonic() - started))
                request.ClearField("wait_timeout")
                if left > 0:
                    request.wait_timeout.CopyFrom(_duration(left))
            sent = (time.monotonic(), time.time())
            future = stub.Acquire.future(request, timeout=self.timeout + wait_s, wait_for_ready=wait_for_ready)
            try:
                return future.result()
            except grpc.RpcError:
                raise
            except BaseException:
                # KeyboardInterrupt or the like while waiting: leave the queue. If the grant came
                # first, give it back, since nobody will ever use it.
                if not future.cancel() and future.exception() is None:
                    try:
                        lease_id = future.result().lease.lease_id
                        stub.Release(pb.ReleaseRequest(lease_id=lease_id), timeout=self.timeout)
                    except Exception:  # noqa: BLE001 - it expires by ttl otherwise
                        pass
                raise

        response = self._call("acquire", invoke, resource)
        sent_monotonic, sent_wall = sent
        lease = ServiceLease(self, response.lease, sent_monotonic, sent_wall, waited=wait_s > 0)
        try:
            self._session.add(lease)
        except RuntimeError:  # closed meanwhile
            lease.release()
            raise LockError("the LockClient is closed") from None
        return lease

    def list(self, resource_prefix: str = "") -> List[LockInfo]:
        """Resources held now, whoever holds them (service clients or the file protocol)."""
        request = pb.ListLocksRequest(resource_prefix=resource_prefix)
        response = self._call(
            "list", lambda stub, wait_for_ready: stub.ListLocks(request, timeout=self.timeout, wait_for_ready=wait_for_ready)
        )
        return [
            LockInfo(
                resource=lock.resource,
                holder=lock.holder,
                fencing_token=lock.fencing_token,
                acquired_at=utc_from_seconds(_seconds(lock.acquired_at)),
                expires_at=utc_from_seconds(_seconds(lock.expires_at)),
                ttl=_seconds(lock.ttl),
                waiters=lock.waiters,
                state=lock.state,
                metadata=dict(lock.metadata),
            )
            for lock in response.locks
        ]

    def watch(self, resource_prefix: str = "") -> Iterator[LockEvent]:
        """What happens to the resources starting with resource_prefix, as an iterator: first a
        "HELD" event per held resource and "SNAPSHOT_COMPLETE", then every change as it happens.
        Blocks between events. Leaving the loop (break, or close() of the iterator) ends the watch.
        Raises UnavailableError when the service goes away and WatcherTooSlowError when this reader
        fell too far behind; a new watch then starts from a fresh snapshot."""
        if self._closed:
            raise LockError("cannot watch: the LockClient is closed")
        endpoint, fresh = self._connect("watch", self.connect_timeout)
        call = endpoint.stub.Watch(pb.WatchRequest(resource_prefix=resource_prefix), wait_for_ready=fresh)
        try:
            for event in call:
                yield _event_from(event)
            raise UnavailableError("the service ended the watch")
        except grpc.RpcError as err:
            endpoint.state.failed(err)
            if err.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                self._endpoints.failed(endpoint)  # the next watch goes to another replica
            raise error_from_rpc(err) from None
        finally:
            call.cancel()

    def _call(
        self,
        what: str,
        invoke: Callable[[Any, bool], T],
        resource: Optional[str] = None,
        connect_timeout: Optional[float] = None,
    ) -> T:
        """Runs invoke(stub, wait_for_ready), the blocking call, on a replica it can connect to (as
        channel_state.py explains); gRPC errors become typed errors."""
        connect_timeout = self.connect_timeout if connect_timeout is None else connect_timeout
        endpoints = self._endpoints
        # UNAVAILABLE means nothing was done (a grant whose caller vanished is given back by the
        # service): one address is tried once more after reconnecting, several each in turn.
        retries = 1 if endpoints.size == 1 else endpoints.size
        for attempt in range(retries + 1):
            if self._closed:
                raise LockError(f"cannot {what}: the LockClient is closed")
            try:
                endpoint, fresh = self._connect(what, connect_timeout)
                return invoke(endpoint.stub, fresh)
            except grpc.RpcError as err:
                endpoint.state.failed(err)
                code = err.code() if hasattr(err, "code") else None  # type: ignore[attr-defined]
                # With one address: typically the connection broke since the last call (the
                # service restarted). With several: this replica is down or cannot serve.
                if attempt < retries and code == grpc.StatusCode.UNAVAILABLE and (endpoints.size > 1 or not fresh):
                    endpoints.failed(endpoint)
                    continue
                raise error_from_rpc(err, resource) from None
            except ValueError as err:  # the channel was closed
                raise UnavailableError(f"cannot {what}: {err}") from None
        raise AssertionError("unreachable")

    def _connect(self, what: str, connect_timeout: float) -> "tuple[Endpoint, bool]":
        """The current replica if the last call through it went through, else the first (from the
        current one on) that connects within connect_timeout; and whether it was not connected."""
        endpoints = self._endpoints
        endpoint = endpoints.current()
        if endpoint.state.connected:
            return endpoint, False
        deadline = time.monotonic() + connect_timeout
        if endpoints.size > 1:
            # First without waiting: a replica that refuses connections costs nothing.
            for _ in range(endpoints.size):
                endpoint = endpoints.current()
                if endpoint.state.wait_ready(max(0.0, deadline - time.monotonic()), wait=False):
                    return endpoint, True
                endpoints.failed(endpoint)
        # Then waiting for each in turn, sharing what is left of connect_timeout.
        for left in range(endpoints.size, 0, -1):
            endpoint = endpoints.current()
            if endpoint.state.wait_ready(max(0.0, deadline - time.monotonic()) / left):
                return endpoint, True
            endpoints.failed(endpoint)
        raise UnavailableError(f"cannot {what}: no connection to mcp-lockd at {self.address} within {connect_timeout:g} s")

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Releases the leases still held (they are then lost, reason "closed"), stops the
        KeepAlive thread and closes the channel. Safe to call twice."""
        with self._close_lock:
            if self._closing:
                return
            self._closing = True
        for lease in self._session.leases():
            lease.lost._mark("closed")
            try:
                lease._release(CLOSE_CONNECT_TIMEOUT_S)
            except LockError:
                pass  # it expires by ttl
        self._closed = True
        self._shutdown()
        _open_clients.discard(self)

    def __enter__(self) -> "LockClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
