"""The mcp-lockd file protocol, version 1 (docs/protocol.md), standard library only.

The steps of the protocol, one function each, with no background thread:
FileLock (file_lock.py) builds the context manager on them.

    grant = acquire(lock_dir, "gateway", "my-job", ttl=30, wait=10)
    ...                      # use the resource; pass grant.fencing_token on
    renew(grant)             # at about ttl / 3
    release(grant)

Written from the document, independently of the service's code, and run
against the service by the tests. Section numbers refer to docs/protocol.md.
"""

from __future__ import annotations

import calendar
import errno
import json
import logging
import math
import os
import random
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, TypeVar

from .errors import (
    CorruptFenceError,
    GuardTimeoutError,
    InvalidArgumentError,
    LeaseLostError,
    LockError,
    ResourceBusyError,
    UnavailableError,
)
from .lease import utc_from_seconds

__all__ = [
    "acquire",
    "try_acquire",
    "renew",
    "release",
    "reclaim",
    "read_state",
    "list_states",
    "Grant",
    "State",
    "format_time",
    "parse_time",
]

_log = logging.getLogger("mcp_lockd")

# Section 1.
RESOURCE_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
LEASE_SUFFIX = ".lock"
FENCE_SUFFIX = ".lock.fence"
GUARD_SUFFIX = ".lock.guard"
# Section 2.
FILE_VERSION = 1
# Lease files of version 2 (docs/protocol.md) have the same fields: read both.
READABLE_LEASE_VERSIONS = (1, 2)
MAX_TTL_MS = 3_600_000
MAX_HOLDER_BYTES = 256
MAX_METADATA_ENTRIES = 32
MAX_METADATA_VALUE_BYTES = 1024
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
# "Waiting": there is no queue in the file protocol, so waiters poll, with jitter.
POLL_MIN_S = 0.005
POLL_MAX_S = 0.020


@dataclass
class State:
    """What the lease file of a resource says at `now_ms` (section 2, "States of a resource")."""

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
class Grant:
    """A lease granted through the file protocol: what its holder must remember (T above all)."""

    lock_dir: str
    resource: str
    holder: str
    ttl: float  # seconds
    fencing_token: int
    acquired_at: int  # ms since the epoch
    expires_at: int  # ms since the epoch, as last written
    metadata: Dict[str, str] = field(default_factory=dict)
    # time.monotonic() when the `now` of the last confirmed write was read, and the ms from that
    # `now` to its `expires_at` (section 7: measure with a monotonic clock from before the write).
    confirmed_at_monotonic: float = 0.0
    confirmed_ttl_ms: float = 0.0

    @property
    def deadline_monotonic(self) -> float:
        """The monotonic time at which the last confirmed write's expiry passes."""
        return self.confirmed_at_monotonic + self.confirmed_ttl_ms / 1000


# ---------------------------------------------------------------- names and paths


def check_resource(resource: Any) -> None:
    if not isinstance(resource, str) or not RESOURCE_PATTERN.match(resource):
        raise InvalidArgumentError(
            f"resource: {resource!r} must match ^[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}$ "
            "(1 to 128 letters, digits, '.', '_', '-', not starting with '.')",
            "resource",
        )


def _lease_path(lock_dir: str, resource: str) -> str:
    return os.path.join(lock_dir, resource + LEASE_SUFFIX)


def _fence_path(lock_dir: str, resource: str) -> str:
    return os.path.join(lock_dir, resource + FENCE_SUFFIX)


def _guard_path(lock_dir: str, resource: str) -> str:
    return os.path.join(lock_dir, resource + GUARD_SUFFIX)


def _unavailable(what: str, path: str, err: OSError) -> UnavailableError:
    name = errno.errorcode.get(err.errno or 0, str(err.errno))
    return UnavailableError(f"{what} {path} failed: {name} ({err.strerror})")


def _remove_lease_file(path: str) -> bool:
    """Unlinks R.lock: True if removed, False if it was already gone (ENOENT)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise _unavailable("removing the lease file", path, err) from err
    return True


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
    # A leap second (:60) is not accepted (section 2).
    if not (1 <= month <= 12) or hour > 23 or minute > 59 or second > 59:
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
    if not (_is_number(d.get("version")) and d["version"] in READABLE_LEASE_VERSIONS):
        return f"unsupported version {d.get('version')!r}"
    if d.get("resource") != resource:
        return f"resource {d.get('resource')!r} does not match the file name"
    # The size limits bind writers; readers do not reject a file for them (section 2).
    if not isinstance(d.get("holder"), str):
        return "holder is not a string"
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
    check_resource(resource)
    path = _lease_path(lock_dir, resource)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return State(kind="free", resource=resource)
    except OSError as err:
        raise _unavailable("reading the lease file", path, err) from err
    try:
        # mtime and content through one descriptor, so they belong to the same file.
        mtime_ms = os.fstat(fd).st_mtime_ns / 1e6
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as err:  # EISDIR and the like: an error, never "free" (section 5, step 3)
        raise _unavailable("reading the lease file", path, err) from err
    finally:
        os.close(fd)
    return classify(b"".join(chunks), resource, mtime_ms, time.time_ns() / 1e6 if now is None else now)


def list_states(lock_dir: str) -> List[State]:
    """The state of every lease file in `lock_dir` that blocks its resource, sorted by resource."""
    try:
        entries = os.listdir(lock_dir)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise _unavailable("listing the lock dir", lock_dir, err) from err
    states = []
    for entry in sorted(entries):
        resource = entry[: -len(LEASE_SUFFIX)] if entry.endswith(LEASE_SUFFIX) else ""
        if RESOURCE_PATTERN.match(resource):
            state = read_state(lock_dir, resource)
            if state.blocks:
                states.append(state)
    return states


def _read_fence(lock_dir: str, resource: str) -> int:
    """The counter F of section 2 (0 when the file is missing)."""
    path = _fence_path(lock_dir, resource)
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return 0
    except OSError as err:
        raise _unavailable("reading the fencing counter", path, err) from err
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
    raise CorruptFenceError(
        f"the fencing counter {path} cannot be parsed ({text[:80]!r}); an operator must repair it "
        "with a value at least as high as any token issued"
    )


# ---------------------------------------------------------------- the guard (section 3)


class _Guard:
    """mkdir mutex around a read-check-write, compatible with proper-lockfile 4.x."""

    def __init__(self, lock_dir: str, resource: str, give_up_at: Optional[float] = None):
        self.lock_dir = lock_dir
        self.path = _guard_path(lock_dir, resource)
        self._give_up_at = give_up_at
        self._stop = threading.Event()
        self._keeper: Optional[threading.Thread] = None

    def __enter__(self) -> "_Guard":
        give_up = time.monotonic() + GUARD_GIVE_UP_S
        if self._give_up_at is not None:
            give_up = min(give_up, self._give_up_at)
        delay = GUARD_FIRST_DELAY_S
        made_dir = False
        while True:
            try:
                os.mkdir(self.path)  # not recursive: fails if it exists
                break
            except FileExistsError:
                pass
            except FileNotFoundError as err:
                # The lock dir itself is missing: make it once (mode 0755), then retry.
                if made_dir:
                    raise _unavailable("taking the guard", self.path, err) from err
                made_dir = True
                try:
                    os.makedirs(self.lock_dir, 0o755, exist_ok=True)
                except OSError as mkdir_err:
                    raise _unavailable("creating the lock dir", self.lock_dir, mkdir_err) from mkdir_err
                continue
            except OSError as err:  # ENOTDIR, EACCES, EROFS...: waiting will not fix it
                raise _unavailable("taking the guard", self.path, err) from err
            try:
                stat = os.stat(self.path)
            except FileNotFoundError:
                continue  # released between our mkdir and stat: try again at once
            except OSError as err:
                raise _unavailable("checking the guard", self.path, err) from err
            if stat.st_mtime_ns / 1e6 < time.time_ns() / 1e6 - GUARD_STALE_MS:
                # Its holder died: break it and try again at once.
                try:
                    os.rmdir(self.path)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    raise _unavailable("breaking the stale guard", self.path, err) from err
                continue
            if time.monotonic() >= give_up:
                raise GuardTimeoutError(
                    f"the guard {self.path} stayed taken (and fresh) until we gave up; "
                    "another writer may be stuck inside it"
                )
            time.sleep(min(delay, max(0.0, give_up - time.monotonic())))
            delay = min(delay * GUARD_DELAY_FACTOR, GUARD_MAX_DELAY_S)
        # Step 3: only matters if we keep it longer than 5 s (a very slow disk).
        self._keeper = threading.Thread(target=self._keep_fresh, name="mcp_lockd-guard", daemon=True)
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
            _log.warning("mcp_lockd: the guard %s was broken while we held it", self.path)
        except OSError as err:
            _log.warning("mcp_lockd: could not remove the guard %s: %s", self.path, err)


T = TypeVar("T")


def _guarded(lock_dir: str, resource: str, work: Callable[[], T], give_up_at: Optional[float] = None) -> T:
    with _Guard(lock_dir, resource, give_up_at):
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
    except BaseException as err:
        try:
            os.unlink(temp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise _unavailable("writing", target, err) from err
        raise
    try:
        _fsync_dir(lock_dir)
    except OSError as err:
        raise _unavailable("syncing the lock dir after writing", target, err) from err


# ---------------------------------------------------------------- arguments


def check_ttl(ttl: Any) -> int:
    """ttl in seconds, (0, 3600], fractions allowed; returns it in whole ms (rounded up)."""
    if not _is_number(ttl) or not (0 < ttl <= MAX_TTL_MS / 1000):
        raise InvalidArgumentError(f"ttl: {ttl!r} must be a number of seconds in (0, 3600]", "ttl")
    return int(math.ceil(ttl * 1000))


def check_holder(holder: Any) -> str:
    if not isinstance(holder, str):
        raise InvalidArgumentError("holder: must be a string", "holder")
    size = len(holder.encode("utf-8"))
    if size > MAX_HOLDER_BYTES:
        raise InvalidArgumentError(f"holder: {size} bytes; at most {MAX_HOLDER_BYTES} bytes allowed", "holder")
    return holder


def check_metadata(metadata: Any) -> Dict[str, str]:
    metadata = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise InvalidArgumentError("metadata: must map strings to strings", "metadata")
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise InvalidArgumentError(f"metadata: {len(metadata)} entries; at most {MAX_METADATA_ENTRIES}", "metadata")
    for key, value in metadata.items():
        if len(value.encode("utf-8")) > MAX_METADATA_VALUE_BYTES:
            raise InvalidArgumentError(
                f"metadata: the value of {key!r} is over {MAX_METADATA_VALUE_BYTES} bytes", "metadata"
            )
    return metadata


def check_wait(wait: Any) -> float:
    """None or 0: try once; a number of seconds; math.inf: no limit."""
    if wait is None:
        return 0.0
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or math.isnan(wait) or wait < 0:
        raise InvalidArgumentError(f"wait: {wait!r} must be None or a number of seconds >= 0", "wait")
    return float(wait)


# ---------------------------------------------------------------- operations (section 5)


def try_acquire(lock_dir: str, resource: str, holder: str, ttl: float, metadata: Dict[str, str]) -> "Grant | State":
    """One attempt (steps 2 to 7): the Grant, or the blocking State."""
    ttl_ms = check_ttl(ttl)

    def work() -> "Grant | State":
        now = now_ms()  # read after taking the guard
        started = time.monotonic()  # the lease's time runs from `now`, not from when the write ends
        current = read_state(lock_dir, resource, now)
        if current.blocks:
            return current
        fence = _read_fence(lock_dir, resource)
        previous = current.fencing_token if current.kind == "expired" else 0
        token = max(fence, previous or 0) + 1
        if token > MAX_SAFE_INTEGER:
            raise LockError(f"the fencing counter of {resource!r} is exhausted", code="INTERNAL")
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
        # Writing over an expired (or old unreadable) lease file reclaims it.
        _write_atomically(lock_dir, resource, _lease_path(lock_dir, resource), document)
        return Grant(
            lock_dir=lock_dir,
            resource=resource,
            holder=holder,
            ttl=ttl,
            fencing_token=token,
            acquired_at=now,
            expires_at=now + ttl_ms,
            metadata=dict(metadata),
            confirmed_at_monotonic=started,
            confirmed_ttl_ms=ttl_ms,
        )

    return _guarded(lock_dir, resource, work)


def busy_error(resource: str, state: State, waited_s: float) -> ResourceBusyError:
    if state.kind == "held":
        who, holder = f'"{state.holder}"', state.holder
    else:
        who, holder = "an unknown holder (unreadable lease file)", "unknown"
    until = state.blocked_until_ms
    error = ResourceBusyError(
        f'resource "{resource}" is held by {who} until {format_time(until)} (waited {waited_s:.3f}s)',
        resource,
        holder,
        None if until is None else utc_from_seconds(until / 1000),
    )
    error.state = state  # type: ignore[attr-defined]  # for tests and tools that want the details
    return error


def acquire(
    lock_dir: str,
    resource: str,
    holder: str,
    ttl: float = 30,
    wait: Optional[float] = None,
    metadata: Optional[Dict[str, str]] = None,
) -> Grant:
    """Acquires `resource` for `ttl` seconds, polling for up to `wait` seconds (None or 0: try once;
    math.inf: no limit). Raises ResourceBusyError when it is still held when the wait runs out."""
    check_resource(resource)
    check_ttl(ttl)
    check_holder(holder)
    metadata = check_metadata(metadata)
    wait_s = check_wait(wait)
    started = time.monotonic()
    deadline = started + wait_s
    while True:
        outcome = try_acquire(lock_dir, resource, holder, ttl, metadata)
        if isinstance(outcome, Grant):
            return outcome
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise busy_error(resource, outcome, time.monotonic() - started)
            time.sleep(min(left, random.uniform(POLL_MIN_S, POLL_MAX_S)))
            # A look without the guard first, so waiters do not crowd the guard of a held resource.
            peek = read_state(lock_dir, resource)
            if not peek.blocks:
                break
            outcome = peek


def renew(grant: Grant, give_up_at: Optional[float] = None) -> Grant:
    """Extends the lease to now + ttl (section 5, "Renew"). Raises LeaseLostError if the lease file
    is no longer ours or has expired, and also, writing nothing, once `give_up_at` (a monotonic
    time: the holder's own deadline) has passed."""
    ttl_ms = check_ttl(grant.ttl)

    def work() -> Grant:
        now = now_ms()
        started = time.monotonic()
        if give_up_at is not None and started >= give_up_at:
            raise LeaseLostError(
                f'the lease on "{grant.resource}" (fencing token {grant.fencing_token}) was not renewed '
                "before its expiry",
                grant.resource,
                "unconfirmed",
            )
        current = read_state(grant.lock_dir, grant.resource, now)
        if current.kind != "held" or current.fencing_token != grant.fencing_token:
            # Lost: write nothing, and stop using the resource.
            raise LeaseLostError(
                f'the lease on "{grant.resource}" with fencing token {grant.fencing_token} is lost '
                f"(the lease file is {current.kind}"
                + (f", token {current.fencing_token}" if current.fencing_token is not None else "")
                + ")",
                grant.resource,
                "expired",
            )
        document = dict(current.document or {})  # every other field unchanged, unknown ones too
        document["renewed_at"] = format_time(now)
        document["expires_at"] = format_time(now + ttl_ms)
        _write_atomically(grant.lock_dir, grant.resource, _lease_path(grant.lock_dir, grant.resource), document)
        grant.expires_at = now + ttl_ms
        grant.confirmed_at_monotonic = started
        grant.confirmed_ttl_ms = ttl_ms
        return grant

    return _guarded(grant.lock_dir, grant.resource, work, give_up_at)


def release(grant: Grant) -> bool:
    """Ends the lease. True when our lease file was removed; False if it had already been replaced
    or removed (the lease had ended before)."""

    def work() -> bool:
        current = read_state(grant.lock_dir, grant.resource)
        if current.fencing_token != grant.fencing_token:
            return False  # someone else's (or unreadable, or gone): our lease had already ended
        return _remove_lease_file(_lease_path(grant.lock_dir, grant.resource))

    released = _guarded(grant.lock_dir, grant.resource, work)
    grant.expires_at = min(grant.expires_at, now_ms())
    grant.confirmed_ttl_ms = 0
    return released


def reclaim(lock_dir: str, resource: str) -> bool:
    """Removes R.lock if it is expired (or unreadable and older than 3600 s). True if removed."""
    check_resource(resource)

    def work() -> bool:
        current = read_state(lock_dir, resource, now_ms())
        if current.kind not in ("expired", "old-unreadable"):
            return False
        # Keep the counter at least as high as the token being forgotten (section 2, invariant).
        if current.kind == "expired" and (current.fencing_token or 0) > _read_fence(lock_dir, resource):
            _write_atomically(
                lock_dir,
                resource,
                _fence_path(lock_dir, resource),
                {"version": FILE_VERSION, "resource": resource, "fencing_token": current.fencing_token},
            )
        return _remove_lease_file(_lease_path(lock_dir, resource))

    return _guarded(lock_dir, resource, work)
