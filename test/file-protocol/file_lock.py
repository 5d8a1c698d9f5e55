"""The mcp-lockd file protocol, version 1, written from docs/protocol.md only.

A second, independent implementation of the protocol (Python standard library
only). It exists to show that the document is precise enough to interoperate
with the service: the tests in interop.test.ts run it against mcp-lockd.

    lease = acquire(lock_dir, "gateway", "my-job", ttl=30, wait_timeout=10)
    ...                      # use the resource; pass lease.fencing_token on
    renew(lease)             # at about ttl / 3
    release(lease)

Run as a script it is a small driver for tests: it reads one JSON command per
line on stdin and answers one JSON line per command on stdout:

    python3 file_lock.py <lock_dir>
    {"op": "acquire", "resource": "R", "holder": "h", "ttl": 30, "wait_timeout": 0}
    {"op": "renew", "fencing_token": 3}     (a lease this driver acquired)
    {"op": "release", "fencing_token": 3}
    {"op": "state", "resource": "R"}

Section numbers in comments refer to docs/protocol.md.
"""

from __future__ import annotations

import calendar
import errno
import json
import math
import os
import random
import re
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar

__all__ = [
    "acquire",
    "renew",
    "release",
    "reclaim",
    "read_state",
    "Lease",
    "State",
    "LockError",
    "InvalidArgument",
    "Busy",
    "LockLost",
    "GuardTimeout",
    "CorruptFence",
]

# Section 1.
RESOURCE_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
LEASE_SUFFIX = ".lock"
FENCE_SUFFIX = ".lock.fence"
GUARD_SUFFIX = ".lock.guard"
# Section 2.
FILE_VERSION = 1
MAX_TTL_MS = 3_600_000
MAX_HOLDER_BYTES = 256
MAX_SAFE_INTEGER = 2**53 - 1
SHA256_HEX = re.compile(r"\A[0-9a-f]{64}\Z")
# RFC 3339 section 5.6 ("T" and "Z" may be lower case, per its NOTE).
RFC3339 = re.compile(
    r"\A(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z"
)
# Section 3: every participant MUST use the same numbers.
GUARD_STALE_MS = 10_000
GUARD_UPDATE_S = 5.0
GUARD_FIRST_DELAY_S = 0.002
GUARD_DELAY_FACTOR = 1.3
GUARD_MAX_DELAY_S = 0.100
GUARD_GIVE_UP_S = 15.0
# "Waiting": polling delays between attempts.
POLL_MIN_S = 0.005
POLL_MAX_S = 0.020
# Section 7: stop using the resource this long before the confirmed expiry.
SAFETY_MARGIN_MS = 100


class LockError(Exception):
    """Base of every error this module raises on purpose."""


class InvalidArgument(LockError):
    """A resource name, ttl, holder or metadata that the protocol does not allow."""


class Busy(LockError):
    """The resource is held (or its lease file is unreadable) and the wait ran out."""

    def __init__(self, resource: str, state: "State", waited_s: float):
        self.resource = resource
        self.state = state
        self.waited_s = waited_s
        who = state.holder if state.kind == "held" else "an unknown holder (unreadable lease file)"
        super().__init__(
            f'resource "{resource}" is held by {who} until {format_time(state.blocked_until_ms)}'
            f" (waited {waited_s:.3f}s)"
        )


class LockLost(LockError):
    """A renewal found the lease gone, replaced or expired: stop using the resource."""


class GuardTimeout(LockError):
    """The guard directory stayed taken (and fresh) for about 15 s."""


class CorruptFence(LockError):
    """The fencing counter file exists but cannot be parsed: acquisition must stop."""


@dataclass
class State:
    """What the lease file of a resource says at `now_ms` (section 2, "States")."""

    kind: str  # "free" | "held" | "expired" | "unreadable" | "old-unreadable"
    resource: str
    mtime_ms: Optional[float] = None
    # For files that parse:
    document: Optional[dict] = None
    holder: Optional[str] = None
    fencing_token: Optional[int] = None
    expires_at_ms: Optional[float] = None  # as written in the file
    # When the resource stops being blocked by this file: min(expires_at, mtime + 3600 s)
    # for a lease that parses, mtime + 3600 s for an unreadable one.
    blocked_until_ms: Optional[float] = None
    reason: Optional[str] = None  # why the file is unreadable

    @property
    def blocks(self) -> bool:
        return self.kind in ("held", "unreadable")


@dataclass
class Lease:
    """A lease granted through the file protocol. Keep `fencing_token` (T)."""

    lock_dir: str
    resource: str
    holder: str
    ttl: float  # seconds
    fencing_token: int
    acquired_at: int  # ms since the epoch
    expires_at: int  # ms since the epoch, of the last confirmed write
    metadata: dict = field(default_factory=dict)
    # time.monotonic() when the `now` of the last confirmed grant/renewal was read, and the
    # ms from that `now` to its `expires_at` (section 7: measure with a monotonic clock).
    confirmed_at_monotonic: float = 0.0
    confirmed_ttl_ms: float = 0.0

    def remaining_ms(self) -> float:
        """How long the lease may still be used, by the monotonic clock, minus a safety margin."""
        elapsed_ms = (time.monotonic() - self.confirmed_at_monotonic) * 1000
        return self.confirmed_ttl_ms - elapsed_ms - SAFETY_MARGIN_MS


# ---------------------------------------------------------------- paths


def _check_resource(resource: str) -> None:
    if not isinstance(resource, str) or not RESOURCE_PATTERN.match(resource):
        raise InvalidArgument(
            f"resource {resource!r} must match {RESOURCE_PATTERN.pattern[2:-2]} "
            "(1 to 128 letters, digits, '.', '_', '-', not starting with '.')"
        )


def _lease_path(lock_dir: str, resource: str) -> str:
    return os.path.join(lock_dir, resource + LEASE_SUFFIX)


def _fence_path(lock_dir: str, resource: str) -> str:
    return os.path.join(lock_dir, resource + FENCE_SUFFIX)


def _guard_path(lock_dir: str, resource: str) -> str:
    return os.path.join(lock_dir, resource + GUARD_SUFFIX)


# ---------------------------------------------------------------- time


def now_ms() -> int:
    """Wall clock, whole milliseconds since the epoch (section 2 uses ms)."""
    return time.time_ns() // 1_000_000


def format_time(ms: Optional[float]) -> str:
    """RFC 3339, UTC, millisecond precision: 2026-01-09T14:30:00.000Z."""
    if ms is None:
        return "?"
    whole = int(math.floor(ms))
    seconds, millis = divmod(whole, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def parse_time(value: Any) -> Optional[float]:
    """An RFC 3339 date-time as ms since the epoch, or None if it is not one."""
    if not isinstance(value, str):
        return None
    m = RFC3339.match(value)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= month <= 12) or hour > 23 or minute > 59 or second > 60:
        return None
    if not (1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    fraction = float("0" + m.group(7)) if m.group(7) else 0.0
    offset_text = m.group(8)
    offset_s = 0
    if offset_text not in ("Z", "z"):
        sign = 1 if offset_text[0] == "+" else -1
        oh, om = int(offset_text[1:3]), int(offset_text[4:6])
        if oh > 23 or om > 59:
            return None
        offset_s = sign * (oh * 3600 + om * 60)
    epoch_s = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset_s
    return epoch_s * 1000 + fraction * 1000


# ---------------------------------------------------------------- parsing (section 2)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    # JSON has one number type: 5.0 is the integer 5 (as in JSON Schema).
    return _is_number(value) and float(value).is_integer() and abs(value) <= MAX_SAFE_INTEGER


def _why_invalid(document: Any, resource: str) -> Optional[str]:
    """None when `document` is a valid version-1 lease of `resource`, else the reason."""
    if not isinstance(document, dict):
        return "not a JSON object"
    d = document
    if not (_is_number(d.get("version")) and d["version"] == FILE_VERSION):
        return f"unsupported version {d.get('version')!r}"
    if d.get("resource") != resource:
        return f"resource {d.get('resource')!r} does not match the file name"
    holder = d.get("holder")
    if not isinstance(holder, str):
        return "holder is not a string"
    if len(holder.encode("utf-8", "surrogatepass")) > MAX_HOLDER_BYTES:
        return f"holder is longer than {MAX_HOLDER_BYTES} bytes"
    if parse_time(d.get("acquired_at")) is None:
        return "acquired_at is not an RFC 3339 date-time"
    if "renewed_at" in d and parse_time(d["renewed_at"]) is None:
        return "renewed_at is not an RFC 3339 date-time"
    ttl = d.get("ttl")
    if not (_is_number(ttl) and 0 < ttl <= MAX_TTL_MS / 1000):
        return "ttl is not a number of seconds in (0, 3600]"
    if parse_time(d.get("expires_at")) is None:
        return "expires_at is not an RFC 3339 date-time"
    token = d.get("fencing_token")
    if not (_is_integer(token) and token >= 1):
        return "fencing_token is not an integer >= 1"
    pid = d.get("pid")
    if not (_is_integer(pid) and pid >= 0):
        return "pid is not an integer >= 0"
    if not isinstance(d.get("hostname"), str):
        return "hostname is not a string"
    if "metadata" in d:
        metadata = d["metadata"]
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            return "metadata is not an object of strings"
    if "lease_id_sha256" in d:
        hashed = d["lease_id_sha256"]
        if not (isinstance(hashed, str) and SHA256_HEX.match(hashed)):
            return "lease_id_sha256 is not 64 lowercase hex digits"
    return None


def classify(text: bytes, resource: str, mtime_ms: float, now: float) -> State:
    """Classifies the bytes of an existing lease file (section 2, "States of a resource")."""
    try:
        document = json.loads(text.decode("utf-8"))
        reason = _why_invalid(document, resource)
    except UnicodeDecodeError:
        reason = "not UTF-8"
    except ValueError as err:
        reason = "the file is empty" if not text.strip() else f"not JSON ({err})"
    if reason is not None:
        until = mtime_ms + MAX_TTL_MS
        return State(
            kind="unreadable" if now < until else "old-unreadable",
            resource=resource,
            mtime_ms=mtime_ms,
            blocked_until_ms=until,
            reason=reason,
        )
    expires = parse_time(document["expires_at"])
    assert expires is not None
    until = min(expires, mtime_ms + MAX_TTL_MS)
    return State(
        kind="held" if now < until else "expired",
        resource=resource,
        mtime_ms=mtime_ms,
        document=document,
        holder=document["holder"],
        fencing_token=int(document["fencing_token"]),
        expires_at_ms=expires,
        blocked_until_ms=until,
    )


def read_state(lock_dir: str, resource: str, now: Optional[float] = None) -> State:
    """Reads and classifies R.lock. Errors other than ENOENT are raised, never taken for "free"."""
    _check_resource(resource)
    path = _lease_path(lock_dir, resource)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return State(kind="free", resource=resource)
    try:
        # mtime and content through one descriptor, so they belong to the same file.
        mtime_ms = os.fstat(fd).st_mtime_ns / 1e6
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return classify(b"".join(chunks), resource, mtime_ms, time.time_ns() / 1e6 if now is None else now)


def _read_fence(lock_dir: str, resource: str) -> int:
    """The last token issued for `resource` (0 when the counter file is missing)."""
    path = _fence_path(lock_dir, resource)
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return 0
    try:
        d = json.loads(text.decode("utf-8"))
    except ValueError:
        d = None
    if (
        isinstance(d, dict)
        and _is_number(d.get("version"))
        and d["version"] == FILE_VERSION
        and d.get("resource") == resource
        and _is_integer(d.get("fencing_token"))
        and d["fencing_token"] >= 0
    ):
        return int(d["fencing_token"])
    # Guessing could issue a token twice (section 2).
    raise CorruptFence(
        f"the fencing counter {path} cannot be parsed ({text[:80]!r}); an operator must repair it "
        "with a value at least as high as any token issued"
    )


# ---------------------------------------------------------------- the guard (section 3)


class _Guard:
    """mkdir mutex around a read-check-write, compatible with proper-lockfile 4.x."""

    def __init__(self, lock_dir: str, resource: str):
        self.path = _guard_path(lock_dir, resource)
        self._stop = threading.Event()
        self._keeper: Optional[threading.Thread] = None

    def __enter__(self) -> "_Guard":
        give_up = time.monotonic() + GUARD_GIVE_UP_S
        delay = GUARD_FIRST_DELAY_S
        while True:
            try:
                os.mkdir(self.path)  # not recursive: fails if it exists
                break
            except FileExistsError:
                pass
            try:
                stat = os.stat(self.path)
            except FileNotFoundError:
                continue  # released between our mkdir and stat: try again at once
            if stat.st_mtime_ns / 1e6 < time.time_ns() / 1e6 - GUARD_STALE_MS:
                # Its holder died: break it and try again at once.
                try:
                    os.rmdir(self.path)
                except FileNotFoundError:
                    pass
                continue
            if time.monotonic() >= give_up:
                raise GuardTimeout(
                    f"the guard {self.path} has been taken (and fresh) for {GUARD_GIVE_UP_S:.0f}s; "
                    "another writer is stuck inside it"
                )
            time.sleep(delay)
            delay = min(delay * GUARD_DELAY_FACTOR, GUARD_MAX_DELAY_S)
        # Step 3: only matters if we keep it longer than 5 s (a very slow disk).
        self._keeper = threading.Thread(target=self._keep_fresh, daemon=True)
        self._keeper.start()
        return self

    def _keep_fresh(self) -> None:
        while not self._stop.wait(GUARD_UPDATE_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join()
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            # Someone found it stale and broke it: our read-check-write may have raced theirs.
            print(f"file_lock: warning: the guard {self.path} was broken while held", file=sys.stderr)


T = TypeVar("T")


def _guarded(lock_dir: str, resource: str, work: Callable[[], T]) -> T:
    with _Guard(lock_dir, resource):
        return work()


# ---------------------------------------------------------------- atomic writes (section 4)


def _fsync_dir(lock_dir: str) -> None:
    fd = os.open(lock_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(lock_dir: str, resource: str, target: str, document: dict) -> None:
    data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    temp = os.path.join(lock_dir, f".{resource}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    _fsync_dir(lock_dir)


# ---------------------------------------------------------------- operations (section 5)


def _validate_ttl(ttl: float) -> int:
    if not _is_number(ttl) or not (0 < ttl <= MAX_TTL_MS / 1000):
        raise InvalidArgument(f"ttl is {ttl!r}; it must be a number of seconds in (0, 3600]")
    ttl_ms = int(math.ceil(ttl * 1000))
    return ttl_ms


def _try_acquire(lock_dir: str, resource: str, holder: str, ttl: float, metadata: dict) -> "Lease | State":
    ttl_ms = _validate_ttl(ttl)

    def work() -> "Lease | State":
        now = now_ms()  # read after taking the guard
        started = time.monotonic()  # the lease's time runs from `now`, not from when the write ends
        current = read_state(lock_dir, resource, now)
        if current.blocks:
            return current
        fence = _read_fence(lock_dir, resource)
        previous = current.fencing_token if current.kind == "expired" else 0
        token = max(fence, previous or 0) + 1
        if token > MAX_SAFE_INTEGER:
            raise LockError(f"the fencing counter of {resource!r} is exhausted")
        # Counter first: a crash before the lease file still leaves it higher than any token seen.
        _write_atomically(
            lock_dir,
            resource,
            _fence_path(lock_dir, resource),
            {"version": FILE_VERSION, "resource": resource, "fencing_token": token},
        )
        document: dict = {
            "version": FILE_VERSION,
            "resource": resource,
            "holder": holder,
            "acquired_at": format_time(now),
            "renewed_at": format_time(now),
            "ttl": ttl,
            "expires_at": format_time(now + ttl_ms),
            "fencing_token": token,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
        }
        if metadata:
            document["metadata"] = dict(metadata)
        _write_atomically(lock_dir, resource, _lease_path(lock_dir, resource), document)
        lease = Lease(
            lock_dir=lock_dir,
            resource=resource,
            holder=holder,
            ttl=ttl,
            fencing_token=token,
            acquired_at=now,
            expires_at=now + ttl_ms,
            metadata=dict(metadata),
            confirmed_at_monotonic=started,
        )
        lease.confirmed_ttl_ms = ttl_ms
        return lease

    return _guarded(lock_dir, resource, work)


def acquire(
    lock_dir: str,
    resource: str,
    holder: str,
    ttl: float = 30,
    wait_timeout: float = 0,
    metadata: Optional[dict] = None,
) -> Lease:
    """Acquires `resource` for `ttl` seconds, polling for up to `wait_timeout` seconds (0: try once).

    Raises Busy when it is still held when the wait runs out.
    """
    _check_resource(resource)
    _validate_ttl(ttl)
    if not isinstance(holder, str):
        raise InvalidArgument("holder must be a string")
    if len(holder.encode("utf-8")) > MAX_HOLDER_BYTES:
        raise InvalidArgument(f"holder is {len(holder.encode('utf-8'))} bytes; the limit is {MAX_HOLDER_BYTES}")
    metadata = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise InvalidArgument("metadata must map strings to strings")
    if not _is_number(wait_timeout) or wait_timeout < 0:
        raise InvalidArgument(f"wait_timeout is {wait_timeout!r}; it must be a number of seconds >= 0")
    started = time.monotonic()
    deadline = started + wait_timeout
    while True:
        outcome = _try_acquire(lock_dir, resource, holder, ttl, metadata)
        if isinstance(outcome, Lease):
            return outcome
        left = deadline - time.monotonic()
        if left <= 0:
            raise Busy(resource, outcome, time.monotonic() - started)
        # No queue in the file protocol: poll with short, jittered delays.
        time.sleep(min(left, random.uniform(POLL_MIN_S, POLL_MAX_S)))


def renew(lease: Lease) -> Lease:
    """Extends the lease to now + ttl. Raises LockLost if it is no longer ours or has expired."""
    ttl_ms = _validate_ttl(lease.ttl)

    def work() -> Lease:
        now = now_ms()
        started = time.monotonic()
        current = read_state(lease.lock_dir, lease.resource, now)
        if current.kind != "held" or current.fencing_token != lease.fencing_token:
            # Lost: write nothing, and stop using the resource.
            raise LockLost(
                f'the lease on "{lease.resource}" with fencing token {lease.fencing_token} is lost '
                f"(the lease file is {current.kind}"
                + (f", token {current.fencing_token}" if current.fencing_token is not None else "")
                + ")"
            )
        document = dict(current.document or {})  # every other field unchanged, unknown ones too
        document["renewed_at"] = format_time(now)
        document["expires_at"] = format_time(now + ttl_ms)
        _write_atomically(lease.lock_dir, lease.resource, _lease_path(lease.lock_dir, lease.resource), document)
        lease.expires_at = now + ttl_ms
        lease.confirmed_at_monotonic = started
        lease.confirmed_ttl_ms = ttl_ms
        return lease

    return _guarded(lease.lock_dir, lease.resource, work)


def release(lease: Lease) -> bool:
    """Ends the lease. True when our lease file was removed; False if it had already been replaced."""

    def work() -> bool:
        current = read_state(lease.lock_dir, lease.resource)
        if current.fencing_token != lease.fencing_token:
            return False  # someone else's (or unreadable): our lease had already ended
        try:
            os.unlink(_lease_path(lease.lock_dir, lease.resource))
        except FileNotFoundError:
            return False
        return True

    released = _guarded(lease.lock_dir, lease.resource, work)
    lease.expires_at = min(lease.expires_at, now_ms())
    lease.confirmed_ttl_ms = 0
    return released


def reclaim(lock_dir: str, resource: str) -> bool:
    """Removes R.lock if it is expired (or unreadable and older than 3600 s). True if removed."""
    _check_resource(resource)

    def work() -> bool:
        current = read_state(lock_dir, resource, now_ms())
        if current.kind not in ("expired", "old-unreadable"):
            return False
        try:
            os.unlink(_lease_path(lock_dir, resource))
        except FileNotFoundError:
            return False
        return True

    return _guarded(lock_dir, resource, work)


# ---------------------------------------------------------------- test driver


def _state_json(state: State) -> dict:
    return {
        "kind": state.kind,
        "holder": state.holder,
        "fencing_token": state.fencing_token,
        "blocked_until": state.blocked_until_ms,
        "reason": state.reason,
    }


def _lease_json(lease: Lease) -> dict:
    return {
        "resource": lease.resource,
        "holder": lease.holder,
        "fencing_token": lease.fencing_token,
        "acquired_at": lease.acquired_at,
        "expires_at": lease.expires_at,
    }


def _serve(lock_dir: str) -> int:
    leases: dict[int, Lease] = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        started = time.time_ns() / 1e6
        try:
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "acquire":
                lease = acquire(
                    lock_dir,
                    cmd["resource"],
                    cmd.get("holder", f"py-{os.getpid()}"),
                    cmd.get("ttl", 30),
                    cmd.get("wait_timeout", 0),
                    cmd.get("metadata"),
                )
                leases[lease.fencing_token] = lease
                reply: dict = {"ok": True, "lease": _lease_json(lease)}
            elif op == "renew":
                lease = renew(leases[cmd["fencing_token"]])
                reply = {"ok": True, "lease": _lease_json(lease)}
            elif op == "release":
                reply = {"ok": True, "released": release(leases.pop(cmd["fencing_token"]))}
            elif op == "state":
                reply = {"ok": True, "state": _state_json(read_state(lock_dir, cmd["resource"]))}
            else:
                raise InvalidArgument(f"unknown op {op!r}")
        except Busy as err:
            reply = {"ok": False, "error": "Busy", "message": str(err), "state": _state_json(err.state)}
        except Exception as err:  # reported to the test, which decides
            reply = {"ok": False, "error": type(err).__name__, "message": str(err)}
        reply["started"] = started
        reply["finished"] = time.time_ns() / 1e6
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: file_lock.py <lock_dir>   (JSON commands on stdin, one per line)", file=sys.stderr)
        sys.exit(64)
    sys.exit(_serve(sys.argv[1]))
