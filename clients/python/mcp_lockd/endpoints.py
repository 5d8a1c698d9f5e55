"""Where the service is: one address, or several replicas of one service.

`LockClient("a:50051,b:50051")` (or MCP_LOCKD_ADDRESS=a:50051,b:50051) sends
every call to the current replica and moves to the next when that one is
unavailable, like etcd's and Consul's clients. Every replica serves every
lease, so the KeepAlive stream moves too and renews with the same lease ids.
The address syntax is the TypeScript client's (src/client/address-list.ts).
"""

from __future__ import annotations

import re
import threading
from typing import Any, Callable, List, Optional

from .channel_state import ChannelState
from .errors import InvalidArgumentError

__all__ = ["parse_addresses", "Endpoint", "Endpoints"]

# HOST:PORT or [IPv6]:PORT.
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):\d{1,5}")
# A gRPC target with a scheme (unix:/path, dns:host:port, ...).
_TARGET = re.compile(r"(dns|unix|unix-abstract|ipv4|ipv6):\S+")
# These targets carry their own comma-separated list, which gRPC walks itself.
_LIST_TARGET = re.compile(r"(ipv4|ipv6):")


def parse_addresses(text: str) -> List[str]:
    """The addresses in `text`, in order: HOST:PORT[,HOST:PORT...] (spaces around commas allowed).

    A value starting with ipv4: or ipv6: is one gRPC target whatever commas it has. Raises
    InvalidArgumentError (field "address") for an empty entry, a duplicate, or an entry that is
    neither HOST:PORT, [IPv6]:PORT nor a gRPC target with a scheme.
    """
    trimmed = text.strip()
    if _LIST_TARGET.match(trimmed):
        if not _TARGET.fullmatch(trimmed):
            raise InvalidArgumentError(f"address: {text!r} is not a gRPC target", "address")
        return [trimmed]
    addresses = [entry.strip() for entry in trimmed.split(",")]
    for index, address in enumerate(addresses):
        if address == "":
            raise InvalidArgumentError(f"address: {text!r}: address {index + 1} of {len(addresses)} is empty", "address")
        if not (_HOST_PORT.fullmatch(address) or _TARGET.fullmatch(address)):
            raise InvalidArgumentError(
                f"address: {address!r}: expected HOST:PORT (like 127.0.0.1:50051) or a gRPC target such as "
                "unix:/path, several separated by commas",
                "address",
            )
        if addresses.index(address) != index:
            raise InvalidArgumentError(f"address: {address!r} is listed twice", "address")
    return addresses


class Endpoint:
    """One replica: its channel (made on first use), stub and connection state."""

    def __init__(self, address: str, channel: Any, make_stub: Callable[[Any], Any]):
        self.address = address
        self.channel = channel
        self.stub = make_stub(channel)
        self.state = ChannelState(channel)

    def close(self) -> None:
        self.state.close()
        self.channel.close()


class Endpoints:
    """The replicas in the order given, and the one in use; thread-safe."""

    def __init__(self, addresses: List[str], make_channel: Callable[[str], Any], make_stub: Callable[[Any], Any]):
        self.addresses = list(addresses)
        self._make_channel = make_channel
        self._make_stub = make_stub
        self._endpoints: List[Optional[Endpoint]] = [None] * len(addresses)
        self._current = 0
        self._lock = threading.Lock()
        self._closed = False

    @property
    def size(self) -> int:
        return len(self.addresses)

    def current(self) -> Endpoint:
        with self._lock:
            if self._closed:
                raise ValueError("the channels are closed")
            endpoint = self._endpoints[self._current]
            if endpoint is None:
                address = self.addresses[self._current]
                endpoint = self._endpoints[self._current] = Endpoint(address, self._make_channel(address), self._make_stub)
            return endpoint

    def failed(self, endpoint: Endpoint) -> None:
        """A call through `endpoint` found its replica unavailable: later calls go to the next one.
        Several calls failing on one replica move on once."""
        with self._lock:
            if self._endpoints[self._current] is endpoint:
                self._current = (self._current + 1) % len(self.addresses)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            endpoints, self._endpoints = self._endpoints, [None] * len(self.addresses)
        for endpoint in endpoints:
            if endpoint is not None:
                endpoint.close()
