"""The mcp-lockd file protocol, version 3 (docs/protocol.md), standard library only.

The steps of the protocol, one function each, with no background thread:
FileLock (file_lock.py) builds the context manager on them.

    grant = acquire(lock_dir, "gateway", "my-job", ttl=30, wait=10)
    ...                      # use the resource; pass grant.fencing_token on
    renew(grant)             # at about ttl / 3
    release(grant)

Written from the document, independently of the service's code, and run
against the service by the tests. Section numbers refer to docs/protocol.md.

What version 2 changes, and why (a participant paused inside the guard for
longer than the guard's staleness must never issue a token twice or below one
already issued, nor commit over a state it did not read, outside one named
window):

- The fencing counter `R.lock.fence` is a directory holding one empty file
  named after the last token issued. A token T is issued by
  `rename(fence/N, fence/T)`: exactly one writer can advance N, a writer with a
  stale N gets ENOENT and starts over. No reservations.
- Every committing call (the fence rename, the lease file's link, rename or
  unlink) comes right after the commit rule: less than 5 s (half the guard's
  staleness) since just before the guard's mkdir, on the monotonic clock; the
  lease file still has the identity (inode, mtime, size) read under the guard,
  or is still absent; for a grant, fence/T still exists. A free resource is
  taken with `link` (EEXIST instead of replacing someone's new lease).
- What remains: a pause of more than 5 s exactly between the last check and
  the committing call. See `_commit_lease`.

What version 3 changes (issue 12: a renewal cheap enough to be durable every time):

- Lease files are compact JSON whose last member is a SHA-256 `checksum` of
  the bytes before it, so a torn file (read during a write, or cut by a power
  loss) is unreadable, never free. Times have exactly 3 fraction digits, so a
  renewal has the byte length of the version it overwrites.
- A holder renews its own version 3 file in place: one pwrite at offset 0 and
  an fdatasync, no guard, no temp file, no rename. It writes only when the
  file is still exactly what its own last write left (inode, size, mtime), and
  the renewal stands only if afterwards the inode is still linked and the wall
  clock is still before the overwritten version's expiry. See
  `_renew_in_place`; anything else goes the guarded way (`_renew_guarded`).

Test hook (for the project's real-process pause tests, not for production):
when the environment variable MCP_LOCKD_TEST_STOP_AT is `guard`, `temp` or
`commit`, optionally followed by `:<resource>`, the process stops itself with
SIGSTOP (once per process) at that point of its next operation on that
resource: right after taking the guard, right after its temp lease file is
written (created, written, fsynced, closed), or right before the committing
system call of the lease file, after the last check. `check` (before the
checks of the first commit), `issued` (right after the fence rename) and
`in-place` (an in-place renewal, after its identity check, before its last
deadline check and its pwrite) are accepted too. The unit tests use `_test_hook` in the same places.
"""

from __future__ import annotations

import calendar
import errno
import hashlib
import json
import logging
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import stat as stat_module
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, NamedTuple, Optional, TypeVar

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
    "read_fence",
    "list_states",
    "sweep_temp_files",
    "Grant",
    "State",
    "Fence",
    "format_time",
    "parse_time",
    "encode_lease",
]

_log = logging.getLogger("mcp_lockd")

# Section 1. A whole-string match (re.fullmatch): "$" would accept a trailing newline.
RESOURCE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
LEASE_SUFFIX = ".lock"
FENCE_SUFFIX = ".lock.fence"
GUARD_SUFFIX = ".lock.guard"
# Where a conversion moves a version-1 counter file (section 9); never removed.
RETIRED_FENCE_SUFFIX = ".v1"
# Temp files and dirs: `.R.<pid>.<random>.tmp`; the service's writability probe is `..probe.<pid>.<random>.tmp`.
TEMP_PATTERN = re.compile(r"\.(?:[A-Za-z0-9][A-Za-z0-9._-]{0,127}|\.probe)\.[0-9]+\.[A-Za-z0-9]+\.tmp")
TEMP_MAX_AGE_S = 60.0
# Section 2.
FILE_VERSION = 3  # what we write
READABLE_VERSIONS = (1, 2, 3)  # the same fields; 3 adds the checksum
CHECKSUMMED_VERSION = 3
# The end of a version 3 file: the checksum member last, then only JSON whitespace (re's \s has more).
CHECKSUM_TAIL = re.compile(rb',"checksum":"([0-9a-f]{64})"\}[ \t\r\n]*\Z')
MAX_TTL_MS = 3_600_000
MAX_HOLDER_BYTES = 256
MAX_METADATA_ENTRIES = 32
MAX_METADATA_VALUE_BYTES = 1024
MAX_SAFE_INTEGER = 2**53 - 1
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# RFC 3339 section 5.6 ("T" and "Z" may be lower case, per its NOTE); ASCII digits only (\d is Unicode),
# a fraction of 1 to 9 digits.
RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# The fencing counter: the name of the one file in R.lock.fence/ (decimal, no leading zeros; 0: none yet).
TOKEN_NAME = re.compile(r"0|[1-9][0-9]{0,15}")
# Section 3: every participant MUST use the same numbers.
GUARD_STALE_MS = 10_000
GUARD_FIRST_DELAY_S = 0.002
GUARD_DELAY_FACTOR = 1.3
GUARD_MAX_DELAY_S = 0.100
GUARD_GIVE_UP_S = 15.0
# The commit rule: no committing call later than this after the guard's mkdir (half the staleness).
COMMIT_BUDGET_S = 5.0
# A failed check means "not done, start over"; after this many attempts the operation gives up.
MAX_ATTEMPTS = 5
# "Waiting": there is no queue in the file protocol, so waiters poll, with jitter.
POLL_MIN_S = 0.005
POLL_MAX_S = 0.020

STOP_AT_ENV = "MCP_LOCKD_TEST_STOP_AT"

# The guard's budget is measured on this clock; the unit tests move it to simulate a stall.
_clock: Callable[[], float] = time.monotonic
# Called as _test_hook(step, resource, token) at each step (see the module's docstring); unit tests only.
_test_hook: Optional[Callable[[str, str, Optional[int]], None]] = None
_stopped_once = False


class Identity(NamedTuple):
    """Which file a path named when it was read: a rewrite (rename of a new file) changes it."""

    ino: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, st: os.stat_result) -> "Identity":
        return cls(st.st_ino, st.st_mtime_ns, st.st_size)


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
    expires_at_ms: Optional[int] = None  # as written in the file, rounded up to the ms
    # When the resource stops being blocked by this file: min(expires_at, mtime + 3600 s)
    # for a lease that parses, mtime + 3600 s for an unreadable one.
    blocked_until_ms: Optional[float] = None
    reason: Optional[str] = None  # why the file is unreadable
    # The file as read (None when free): the commit rule checks it is still the same file.
    identity: Optional[Identity] = None
    # An integer fencing_token >= 1 in the file, valid or not: it still counts for the next token.
    counted_token: int = 0

    @property
    def blocks(self) -> bool:
        return self.kind in ("held", "unreadable")


@dataclass(frozen=True)
class Fence:
    """The fencing counter of a resource as read: `kind` "absent" (0), "file" (a version-1 counter
    file, to be converted), "retired" (a version-1 counter a conversion moved aside to R.lock.fence.v1
    and did not finish: its value is a floor) or "dir" (version 2); `value` the last token issued."""

    kind: str
    value: int
    identity: Optional[Identity] = None  # of a version-1 file


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
    # What our own last write of R.lock left (a temp file's identity survives its link or rename):
    # an in-place renewal writes only over exactly this file, and rewrites this document.
    identity: Optional[Identity] = None
    written: Optional[dict] = field(default=None, repr=False)

    @property
    def deadline_monotonic(self) -> float:
        """The monotonic time at which the last confirmed write's expiry passes."""
        return self.confirmed_at_monotonic + self.confirmed_ttl_ms / 1000


class _StartOver(Exception):
    """A check before a committing call failed: nothing was committed; release the guard, start over."""


# ---------------------------------------------------------------- names and paths


def check_resource(resource: Any) -> None:
    if not isinstance(resource, str) or not RESOURCE_PATTERN.fullmatch(resource):
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


def _temp_path(lock_dir: str, resource: str) -> str:
    return os.path.join(lock_dir, f".{resource}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def _unavailable(what: str, path: str, err: OSError) -> UnavailableError:
    name = errno.errorcode.get(err.errno or 0, str(err.errno))
    return UnavailableError(f"{what} {path} failed: {name} ({err.strerror})")


def _identity(path: str) -> Optional[Identity]:
    """The identity of what `path` names now, None if nothing."""
    try:
        return Identity.of(os.stat(path))
    except FileNotFoundError:
        return None
    except OSError as err:
        raise _unavailable("checking", path, err) from err


# ---------------------------------------------------------------- test hooks


def _reached(step: str, resource: str, token: Optional[int] = None) -> None:
    """Marks a step for the tests: `_test_hook`, and MCP_LOCKD_TEST_STOP_AT (see the docstring)."""
    global _stopped_once
    if _test_hook is not None:
        _test_hook(step, resource, token)
    wanted = os.environ.get(STOP_AT_ENV)
    if not wanted or _stopped_once:
        return
    point, _, only = wanted.partition(":")
    if point == step and (not only or only == resource):
        _stopped_once = True
        os.kill(os.getpid(), signal.SIGSTOP)


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


def parse_time(value: Any, round_up: bool = False) -> Optional[int]:
    """An RFC 3339 date-time as whole ms since the epoch (rounded down, or up with `round_up`:
    expires_at is rounded up, later being safe for others), or None if it is not one."""
    if not isinstance(value, str):
        return None
    m = RFC3339.fullmatch(value)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    # Calendar ranges; no leap second (:60).
    if year < 1 or not (1 <= month <= 12) or hour > 23 or minute > 59 or second > 59:
        return None
    if not (1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    fraction_ns = int((m.group(7) or "").ljust(9, "0"))
    offset_text = m.group(8)
    offset_s = 0
    if offset_text not in ("Z", "z"):
        sign = 1 if offset_text[0] == "+" else -1
        oh, om = int(offset_text[1:3]), int(offset_text[4:6])
        if oh > 23 or om > 59:
            return None
        offset_s = sign * (oh * 3600 + om * 60)
    epoch_s = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset_s
    ns = epoch_s * 1_000_000_000 + fraction_ns
    return -(-ns // 1_000_000) if round_up else ns // 1_000_000


# ---------------------------------------------------------------- parsing (section 2)


def _is_number(value: Any) -> bool:
    # true/false are never numbers (bool is an int subclass in Python).
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    # JSON has one number type: 5.0 is the integer 5 (as in JSON Schema, and JavaScript cannot tell).
    return _is_number(value) and float(value).is_integer() and abs(value) <= MAX_SAFE_INTEGER


def _why_checksum_fails(text: bytes, document: Any) -> Optional[str]:
    """For a version 3 document: None when the raw bytes end with `,"checksum":"<H>"}` (then JSON
    whitespace) and H is the SHA-256 of the bytes before that comma, else the reason. Versions 1 and
    2 have no checksum (a `checksum` member there is an unknown field)."""
    if not (isinstance(document, dict) and _is_integer(document.get("version")) and document["version"] == CHECKSUMMED_VERSION):
        return None
    tail = CHECKSUM_TAIL.search(text)
    if tail is None:
        return 'checksum missing: a version 3 file must end with ,"checksum":"<64 lowercase hex>"}'
    if hashlib.sha256(text[: tail.start()]).hexdigest() != tail.group(1).decode("ascii"):
        return "checksum mismatch: the file is torn or was changed after it was written"
    return None


def encode_lease(document: dict) -> bytes:
    """A lease file's bytes as version 3 writes them: compact JSON, its `checksum` member last
    (the SHA-256 of every byte before its comma), one trailing newline. A `checksum` in `document`
    (copied from the file read) is replaced."""
    body = {k: v for k, v in document.items() if k != "checksum"}
    prefix = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")[:-1]  # without its "}"
    return prefix + b',"checksum":"' + hashlib.sha256(prefix).hexdigest().encode("ascii") + b'"}\n'


def _why_invalid(document: Any, resource: str) -> Optional[str]:
    """None when `document` is a valid version 1, 2 or 3 lease of `resource` (the checksum aside),
    else the reason.
    An optional field given as null is invalid, as the JSON Schema says."""
    if not isinstance(document, dict):
        return "not a JSON object"
    d = document
    if not (_is_integer(d.get("version")) and d["version"] in READABLE_VERSIONS):
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
        if not (isinstance(hashed, str) and SHA256_HEX.fullmatch(hashed)):
            return "lease_id_sha256 is not 64 lowercase hex digits"
    return None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json accepts NaN and Infinity by default


def classify(
    text: bytes, resource: str, mtime_ms: float, now: float, identity: Optional[Identity] = None
) -> State:
    """Classifies the bytes of an existing lease file (section 2, "States of a resource")."""
    document: Any = None
    try:
        document = json.loads(text.decode("utf-8"), parse_constant=_no_constants)
        # First, so a torn version 3 file says so rather than what the tear happened to garble.
        reason = _why_checksum_fails(text, document) or _why_invalid(document, resource)
    except UnicodeDecodeError:
        reason = "not UTF-8"
    except ValueError as err:
        reason = "the file is empty" if not text.strip() else f"not JSON ({err})"
    counted = 0
    if isinstance(document, dict):
        token = document.get("fencing_token")
        if _is_integer(token) and token >= 1:
            counted = int(token)
    if reason is not None:
        until = mtime_ms + MAX_TTL_MS
        return State(
            kind="unreadable" if now < until else "old-unreadable",
            resource=resource,
            mtime_ms=mtime_ms,
            blocked_until_ms=until,
            reason=reason,
            identity=identity,
            counted_token=counted,
        )
    expires = parse_time(document["expires_at"], round_up=True)
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
        identity=identity,
        counted_token=counted,
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
        # Identity, mtime and content through one descriptor, so they belong to the same file.
        st = os.fstat(fd)
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
    now = time.time_ns() / 1e6 if now is None else now
    return classify(b"".join(chunks), resource, st.st_mtime_ns / 1e6, now, Identity.of(st))


def _lock_dir_entries(lock_dir: str) -> List[str]:
    """The names in the lock dir, sorted; none when it does not exist yet."""
    try:
        return sorted(os.listdir(lock_dir))
    except FileNotFoundError:
        return []
    except OSError as err:
        raise _unavailable("listing the lock dir", lock_dir, err) from err


def list_states(lock_dir: str) -> List[State]:
    """The state of every lease file in `lock_dir` that blocks its resource, sorted by resource."""
    states = []
    for entry in _lock_dir_entries(lock_dir):
        resource = entry[: -len(LEASE_SUFFIX)] if entry.endswith(LEASE_SUFFIX) else ""
        if RESOURCE_PATTERN.fullmatch(resource):
            state = read_state(lock_dir, resource)
            if state.blocks:
                states.append(state)
    return states


def _read_v1_counter(path: str, resource: str) -> Fence:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            text = os.read(fd, 65536)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return Fence("absent", 0)
    except OSError as err:
        raise _unavailable("reading the fencing counter", path, err) from err
    try:
        d = json.loads(text.decode("utf-8"), parse_constant=_no_constants)
    except ValueError:
        d = None
    if (
        isinstance(d, dict)
        and _is_integer(d.get("version"))
        and d["version"] == 1
        and d.get("resource") == resource
        and _is_integer(d.get("fencing_token"))
        and d["fencing_token"] >= 0
    ):
        return Fence("file", int(d["fencing_token"]), Identity.of(st))
    # Guessing could issue a token twice.
    raise CorruptFenceError(
        f"the version-1 fencing counter {path} cannot be parsed ({text[:80]!r}); an operator must repair "
        "it with a value at least as high as any token issued"
    )


def read_fence(lock_dir: str, resource: str) -> Fence:
    """The fencing counter of R: the directory R.lock.fence/<N>, a version-1 counter file, or absent
    (then a version-1 counter moved aside by an unfinished conversion, if any, names the floor)."""
    path = _fence_path(lock_dir, resource)
    for attempt in range(3):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            retired = _read_v1_counter(path + RETIRED_FENCE_SUFFIX, resource)
            return Fence("retired", retired.value) if retired.kind == "file" else Fence("absent", 0)
        except OSError as err:
            raise _unavailable("reading the fencing counter", path, err) from err
        if stat_module.S_ISREG(st.st_mode):
            return _read_v1_counter(path, resource)
        if not stat_module.S_ISDIR(st.st_mode):
            break
        try:
            names = os.listdir(path)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise _unavailable("reading the fencing counter", path, err) from err
        if len(names) == 1 and TOKEN_NAME.fullmatch(names[0]) and int(names[0]) <= MAX_SAFE_INTEGER:
            return Fence("dir", int(names[0]))
        # A listing taken during someone's rename (only a guard-breaker can rename under our guard)
        # may show neither name or both: look again before calling it corrupt.
        time.sleep(0.001 * (attempt + 1))
    raise CorruptFenceError(
        f"the fencing counter {path} is not a directory holding one file named by the last token issued; "
        "an operator must repair it with a value at least as high as any token issued"
    )


# ---------------------------------------------------------------- the guard (section 3)


class _Guard:
    """The mkdir mutex of one resource, held by us since `started` (our clock, before the mkdir)."""

    def __init__(self, path: str, started: float):
        self.path = path
        self.started = started
        try:
            st = os.lstat(path)
            # The inode and its change time tell our guard from one made after it was broken.
            self.identity: Optional[tuple] = (st.st_ino, st.st_ctime_ns)
        except OSError:
            self.identity = None

    def elapsed_s(self) -> float:
        return _clock() - self.started

    def still_ours(self) -> bool:
        try:
            st = os.lstat(self.path)
        except OSError:
            return False
        return self.identity is not None and (st.st_ino, st.st_ctime_ns) == self.identity

    def release(self) -> None:
        if not self.still_ours():
            # Someone found it stale and broke it: whatever we did after that was checked first.
            _log.warning("mcp_lockd: the guard %s was broken while we held it", self.path)
            return
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError as err:
            _log.warning("mcp_lockd: could not remove the guard %s: %s", self.path, err)


def _take_guard(
    lock_dir: str, resource: str, *, wait: bool = True, give_up_at: Optional[float] = None
) -> Optional[_Guard]:
    """Takes the guard of `resource` (section 3). wait=False: one try (a stale guard is still broken
    and retried at once), None if it is held. wait=True: retries with a growing delay for up to
    15 s (or until `give_up_at`, monotonic), then GuardTimeoutError. A guard path that is not an
    empty directory is an error, and never removed."""
    path = _guard_path(lock_dir, resource)
    give_up = time.monotonic() + GUARD_GIVE_UP_S
    if give_up_at is not None:
        give_up = min(give_up, give_up_at)
    delay = GUARD_FIRST_DELAY_S
    made_dir = False
    while True:
        started = _clock()
        try:
            os.mkdir(path)  # not recursive: fails if it exists
            guard = _Guard(path, started)
            _reached("guard", resource)
            return guard
        except FileExistsError:
            pass
        except FileNotFoundError as err:
            # The lock dir itself is missing: make it once (mode 0755), then retry.
            if made_dir:
                raise _unavailable("taking the guard", path, err) from err
            made_dir = True
            try:
                os.makedirs(lock_dir, 0o755, exist_ok=True)
            except OSError as mkdir_err:
                raise _unavailable("creating the lock dir", lock_dir, mkdir_err) from mkdir_err
            continue
        except OSError as err:  # ENOTDIR, EACCES, EROFS...: waiting will not fix it
            raise _unavailable("taking the guard", path, err) from err
        try:
            st = os.lstat(path)
            if not stat_module.S_ISDIR(st.st_mode):
                raise UnavailableError(
                    f"the guard {path} exists but is not a directory; it is left for an operator to remove"
                )
            if os.listdir(path):
                raise UnavailableError(
                    f"the guard {path} is not an empty directory; it is left for an operator to remove"
                )
        except FileNotFoundError:
            continue  # released between our mkdir and the look: try again at once
        except OSError as err:
            raise _unavailable("checking the guard", path, err) from err
        if st.st_mtime_ns / 1e6 < time.time_ns() / 1e6 - GUARD_STALE_MS:
            # Its holder died or is paused; whatever it does next is checked before it commits.
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                raise _unavailable("breaking the stale guard", path, err) from err
            continue
        if not wait:
            return None
        if time.monotonic() >= give_up:
            raise GuardTimeoutError(
                f"the guard {path} stayed taken (and fresh) until we gave up; another writer may be stuck inside it"
            )
        time.sleep(min(delay, max(0.0, give_up - time.monotonic())))
        delay = min(delay * GUARD_DELAY_FACTOR, GUARD_MAX_DELAY_S)


T = TypeVar("T")


def _guarded(
    lock_dir: str,
    resource: str,
    what: str,
    work: Callable[[_Guard], T],
    *,
    wait: bool = True,
    give_up_at: Optional[float] = None,
    when_busy: Any = None,
) -> T:
    """Runs `work` under the guard; starts over (a new guard, a new read) when a check before a commit
    failed, at most MAX_ATTEMPTS times. wait=False returns `when_busy` if the guard is held."""
    last: Optional[_StartOver] = None
    for _ in range(MAX_ATTEMPTS):
        guard = _take_guard(lock_dir, resource, wait=wait, give_up_at=give_up_at)
        if guard is None:
            return when_busy
        try:
            return work(guard)
        except _StartOver as why:
            last = why
            _log.debug("mcp_lockd: %s of %r starts over: %s", what, resource, why)
        finally:
            guard.release()
    raise UnavailableError(f"{what} of {resource!r} was not committed in {MAX_ATTEMPTS} attempts: {last}")


def _check(
    guard: _Guard,
    lease_path: str,
    identity: Optional[Identity],
    issued: Optional[str] = None,
    holder_deadline: Optional[float] = None,
) -> None:
    """The commit rule, right before a committing call: the lease file is still the one read under
    the guard (or still absent), fence/T still exists (nobody issued a later token), and less than
    COMMIT_BUDGET_S has passed since the guard was taken (so nobody can have broken it)."""
    if _identity(lease_path) != identity:
        raise _StartOver("the lease file changed since it was read under the guard")
    if issued is not None and not os.path.lexists(issued):
        raise _StartOver("a later fencing token was issued since ours")
    if holder_deadline is not None and time.monotonic() >= holder_deadline:
        raise LeaseLostError("the holder's own deadline passed before the renewal was written", reason="unconfirmed")
    elapsed = guard.elapsed_s()
    if elapsed >= COMMIT_BUDGET_S:
        raise _StartOver(f"{elapsed:.3f} s since the guard was taken, the limit is {COMMIT_BUDGET_S} s")


# ---------------------------------------------------------------- writes (section 4)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        _log.warning("mcp_lockd: could not remove %s: %s", path, err)


def _write_temp(lock_dir: str, resource: str, document: dict) -> "tuple[str, Identity]":
    """Writes `document` to a new temp file (O_EXCL, fsynced, closed); returns its path and identity."""
    data = encode_lease(document)
    temp = _temp_path(lock_dir, resource)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            identity = Identity.of(os.fstat(fd))
        finally:
            os.close(fd)
    except BaseException as err:
        _remove_quietly(temp)
        if isinstance(err, OSError):
            raise _unavailable("writing the temp file", temp, err) from err
        raise
    _reached("temp", resource)
    return temp, identity


def _set_fence(guard: _Guard, lock_dir: str, resource: str, fence: Fence, token: int, lease: State) -> None:
    """Moves the counter from `fence` (as read under the guard) to `token`. In a fence directory by
    rename(N, token), which fails for everyone but the first writer with this view; otherwise by
    renaming a new fence directory into place, after removing a version-1 counter file."""
    path = _fence_path(lock_dir, resource)
    lease_path = _lease_path(lock_dir, resource)
    if fence.kind == "dir":
        _check(guard, lease_path, lease.identity)
        try:
            os.rename(os.path.join(path, str(fence.value)), os.path.join(path, str(token)))
        except FileNotFoundError as err:
            raise _StartOver("another writer moved the fencing counter since we read it") from err
        except OSError as err:
            raise _unavailable("advancing the fencing counter", path, err) from err
        try:
            _fsync_dir(path)
        except OSError as err:  # the token is burnt; no lease file was written
            raise _unavailable("syncing the fencing counter", path, err) from err
        return
    temp = _temp_path(lock_dir, resource)
    try:
        try:
            os.mkdir(temp, 0o755)
            fd = os.open(os.path.join(temp, str(token)), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(temp)
        except OSError as err:
            raise _unavailable("preparing the fencing counter", temp, err) from err
        _check(guard, lease_path, lease.identity)
        if fence.kind == "file":
            # Converting a version-1 counter: it must still be the file we read. (A version-1 participant
            # then finds a directory, EISDIR, and stops with an error instead of issuing tokens beside us.)
            if _identity(path) != fence.identity:
                raise _StartOver("the version-1 fencing counter changed since it was read")
            # Moved aside, never removed: a writer paused between this and the rename below leaves
            # the counter absent, and whoever finds it absent reads this file's value as its floor.
            # A directory (someone converted it meanwhile) cannot replace the moved file: ENOTDIR.
            try:
                os.rename(path, path + RETIRED_FENCE_SUFFIX)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
                raise _StartOver("someone else converted the version-1 fencing counter") from err
            except OSError as err:
                raise _unavailable("converting the fencing counter", path, err) from err
        try:
            os.rename(temp, path)
        except OSError as err:
            if err.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise _StartOver("someone else made the fencing counter since we read it") from err
            raise _unavailable("creating the fencing counter", path, err) from err
        try:
            _fsync_dir(lock_dir)
        except OSError as err:
            raise _unavailable("syncing the lock dir after creating", path, err) from err
    finally:
        if os.path.lexists(temp):
            _remove_quietly(temp)


def _commit_lease(
    guard: _Guard,
    lock_dir: str,
    resource: str,
    temp: "Optional[tuple[str, Identity]]",
    read: State,
    *,
    token: Optional[int] = None,
    holder_deadline: Optional[float] = None,
    remove_if_unsynced: bool = False,
) -> None:
    """The committing call of R.lock after the commit rule: link(temp) when it was absent (EEXIST
    rather than replacing someone's new lease), rename(temp) over the file read, unlink when `temp`
    is None. Then the lock dir is fsynced (not after an unlink: releases are not synced).

    What remains: a pause of more than COMMIT_BUDGET_S exactly between the last check and this call.
    Someone may have broken the guard and committed meanwhile; our rename or unlink then lands over
    their file. For a grant, two holders for a moment with distinct tokens, theirs issued later and
    higher (so fenced downstream resources serialise them); their next renewal finds the file not
    theirs. A link still fails (EEXIST). Tokens are never issued twice or lower, the fence rename
    being a compare-and-swap."""
    path = _lease_path(lock_dir, resource)
    issued = None if token is None else os.path.join(_fence_path(lock_dir, resource), str(token))
    _check(guard, path, read.identity, issued, holder_deadline)
    _reached("commit", resource)
    try:
        if temp is None:
            os.unlink(path)
            return
        if read.identity is None:
            os.link(temp[0], path)
        else:
            os.rename(temp[0], path)
    except FileExistsError as err:
        raise _StartOver("a lease file appeared after the last check") from err
    except FileNotFoundError as err:  # our temp file was swept, or the file we read is gone
        raise _StartOver("a file was removed after the last check") from err
    except OSError as err:
        raise _unavailable("committing", path, err) from err
    if read.identity is None:
        _remove_quietly(temp[0])  # the lease file is its second name
    try:
        _fsync_dir(lock_dir)
    except OSError as err:
        if remove_if_unsynced:
            # The grant failed: remove our own lease file (the token is burnt), nobody else's.
            try:
                if os.stat(path).st_ino == temp[1].ino:
                    os.unlink(path)
            except OSError:
                pass
        raise _unavailable("syncing the lock dir after writing", path, err) from err


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

    def work(guard: _Guard) -> "Grant | State":
        now = now_ms()  # read after taking the guard
        started = time.monotonic()  # the lease's time runs from `now`, not from when the write ends
        current = read_state(lock_dir, resource, now)
        if current.blocks:
            return current
        fence = read_fence(lock_dir, resource)
        # An expired or old unreadable file's token counts, valid file or not.
        token = max(fence.value, current.counted_token) + 1
        if token > MAX_SAFE_INTEGER:
            raise LockError(f"the fencing counter of {resource!r} is exhausted", code="INTERNAL")
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
        temp = _write_temp(lock_dir, resource, document)
        try:
            _reached("check", resource)
            _set_fence(guard, lock_dir, resource, fence, token, current)
            _reached("issued", resource, token)
            # Over an expired (or old unreadable) lease file this reclaims it.
            _commit_lease(guard, lock_dir, resource, temp, current, token=token, remove_if_unsynced=True)
        finally:
            if os.path.lexists(temp[0]):
                _remove_quietly(temp[0])
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
            identity=temp[1],
            written=document,
        )

    return _guarded(lock_dir, resource, "the grant", work)


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
    """Extends the lease to now + ttl: in place when the lease file is still exactly what our own
    last write left (version 3, "Renew in place"), else the guarded way (section 5, "Renew").
    Raises LeaseLostError if the lease file is no longer ours or has expired, and also, writing
    nothing, once `give_up_at` (a monotonic time: the holder's own deadline) has passed, checked
    again right before the write."""
    renewed = _renew_in_place(grant, give_up_at)
    return renewed if renewed is not None else _renew_guarded(grant, give_up_at)


def _lost(grant: Grant, why: str, reason: str) -> LeaseLostError:
    return LeaseLostError(
        f'the lease on "{grant.resource}" with fencing token {grant.fencing_token} {why}', grant.resource, reason
    )


def _confirm_renewal(grant: Grant, now: int, started: float, ttl_ms: int, identity: Identity, document: dict) -> Grant:
    grant.expires_at = now + ttl_ms
    grant.confirmed_at_monotonic = started
    grant.confirmed_ttl_ms = ttl_ms
    grant.identity = identity
    grant.written = document
    return grant


def _renew_in_place(grant: Grant, give_up_at: Optional[float]) -> Optional[Grant]:
    """Version 3's renewal: one pwrite over our own lease file and an fdatasync, no guard. None
    (nothing written) when the guarded renewal must decide instead: we are past our own deadline
    (then only the file can tell whether the lease still stands), or R.lock is not exactly what our
    last write left (identity), or the new content's length differs from it.

    No guard is needed because nobody but the holder writes into a lease file's inode: every other
    change replaces or removes the name. A write through our descriptor reaches only our inode; if
    the name was replaced meanwhile, that inode is unlinked (st_nlink 0) and the renewal is lost.
    A reader during the pwrite sees a torn file, which the checksum makes unreadable (busy). A
    reader of the old version judged it live, since the write landed before its expiry (checked
    after the write). A guarded writer that read the old version finds the mtime changed and
    starts over."""
    if grant.identity is None or grant.written is None or time.monotonic() >= grant.deadline_monotonic:
        return None
    ttl_ms = check_ttl(grant.ttl)
    path = _lease_path(grant.lock_dir, grant.resource)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)  # never O_CREAT
    except FileNotFoundError:
        raise _lost(grant, "is lost (the lease file is gone)", "expired") from None
    except OSError as err:
        if err.errno == errno.ELOOP:  # a symlink: not the file we wrote
            raise _lost(grant, "is lost (the lease file was replaced by a symlink)", "expired") from None
        return None  # EACCES and the like: not the file we wrote either, or a fault; the guarded way decides
    try:
        if Identity.of(os.fstat(fd)) != grant.identity:
            return None
        now = now_ms()
        started = time.monotonic()
        document = dict(grant.written)
        document["renewed_at"] = format_time(now)
        document["expires_at"] = format_time(now + ttl_ms)
        data = encode_lease(document)
        if len(data) != grant.identity.size:
            return None
        _reached("in-place", grant.resource)
        if give_up_at is not None and time.monotonic() >= give_up_at:  # right before the write
            raise _lost(grant, "was not renewed before its expiry", "unconfirmed")
        try:
            view = memoryview(data)
            offset = 0
            while offset < len(data):  # one call in practice; a short write is finished, not left torn
                offset += os.pwrite(fd, view[offset:], offset)
            os.fdatasync(fd)
            st = os.fstat(fd)
        except OSError as err:
            # Not confirmed. Our mtime changed (or not): the next attempt's identity check decides.
            raise _unavailable("renewing the lease file in place", path, err) from err
        # The version we overwrote was live until grant.expires_at: if the wall clock is still
        # before it, nobody could have judged it expired and replaced it before our write landed.
        if st.st_nlink < 1:
            raise _lost(grant, "is lost (the lease file was replaced before the renewal landed)", "expired")
        if now_ms() >= grant.expires_at:
            raise _lost(grant, "was not renewed before its expiry (the in-place write landed after it)", "expired")
        return _confirm_renewal(grant, now, started, ttl_ms, Identity.of(st), document)
    finally:
        os.close(fd)


def _renew_guarded(grant: Grant, give_up_at: Optional[float] = None) -> Grant:
    """Section 5, "Renew": under the guard, read the lease file, and replace it (temp file, rename)
    if it is still ours and live; writes version 3 whatever version it read."""
    ttl_ms = check_ttl(grant.ttl)

    def work(guard: _Guard) -> Grant:
        now = now_ms()
        started = time.monotonic()
        if give_up_at is not None and started >= give_up_at:
            raise _lost(grant, "was not renewed before its expiry", "unconfirmed")
        current = read_state(grant.lock_dir, grant.resource, now)
        if current.kind != "held" or current.fencing_token != grant.fencing_token:
            # Lost: write nothing, and stop using the resource.
            raise _lost(
                grant,
                f"is lost (the lease file is {current.kind}"
                + (f", token {current.fencing_token}" if current.fencing_token is not None else "")
                + ")",
                "expired",
            )
        document = dict(current.document or {})  # every other field unchanged, unknown ones too (encode_lease replaces a checksum)
        document["version"] = FILE_VERSION
        document["renewed_at"] = format_time(now)
        document["expires_at"] = format_time(now + ttl_ms)
        temp = _write_temp(grant.lock_dir, grant.resource, document)
        try:
            _reached("check", grant.resource)
            try:
                _commit_lease(guard, grant.lock_dir, grant.resource, temp, current, holder_deadline=give_up_at)
            except LeaseLostError as err:
                raise _lost(grant, "was not renewed before its expiry", "unconfirmed") from err
        finally:
            if os.path.lexists(temp[0]):
                _remove_quietly(temp[0])
        # A renewal whose fsync failed raised above and is not confirmed; the file (ours) stays.
        return _confirm_renewal(grant, now, started, ttl_ms, temp[1], document)

    try:
        return _guarded(grant.lock_dir, grant.resource, "the renewal", work, give_up_at=give_up_at)
    except GuardTimeoutError:
        if give_up_at is not None and time.monotonic() >= give_up_at:
            raise _lost(grant, "was not renewed before its expiry (the guard stayed taken)", "unconfirmed") from None
        raise


def release(grant: Grant) -> bool:
    """Ends the lease. True when our lease file was removed; False if it had already been replaced
    or removed (the lease had ended before)."""

    def work(guard: _Guard) -> bool:
        current = read_state(grant.lock_dir, grant.resource)
        if current.fencing_token != grant.fencing_token:
            return False  # someone else's (or unreadable, or gone): our lease had already ended
        _reached("check", grant.resource)
        _commit_lease(guard, grant.lock_dir, grant.resource, None, current)
        return True

    released = _guarded(grant.lock_dir, grant.resource, "the release", work)
    grant.expires_at = min(grant.expires_at, now_ms())
    grant.confirmed_ttl_ms = 0
    return released


def reclaim(lock_dir: str, resource: str) -> bool:
    """Removes R.lock if it is expired (or unreadable and older than 3600 s). True if removed; False
    if not, or if its guard is taken (someone else is at work on it)."""
    check_resource(resource)

    def work(guard: _Guard) -> bool:
        current = read_state(lock_dir, resource, now_ms())
        if current.kind not in ("expired", "old-unreadable"):
            return False
        # Keep the counter at least as high as the token being forgotten (only a file edited or
        # restored by hand can be above it).
        fence = read_fence(lock_dir, resource)
        _reached("check", resource)
        if current.counted_token > fence.value:
            _set_fence(guard, lock_dir, resource, fence, current.counted_token, current)
        _commit_lease(guard, lock_dir, resource, None, current)
        return True

    return _guarded(lock_dir, resource, "the reclaim", work, wait=False, when_busy=False)


def sweep_temp_files(lock_dir: str, max_age_s: float = TEMP_MAX_AGE_S) -> List[str]:
    """Removes left-over temp files and dirs (`.R.<pid>.<random>.tmp`, `..probe.<pid>.<random>.tmp`)
    older than `max_age_s` (the protocol allows it from 60 s); returns the names removed. A writer
    paused that long whose temp file goes just fails its commit."""
    if max_age_s < TEMP_MAX_AGE_S:
        raise InvalidArgumentError(f"max_age_s: {max_age_s!r}; temp files younger than {TEMP_MAX_AGE_S} s stay", "max_age_s")
    removed = []
    cutoff_ns = time.time_ns() - int(max_age_s * 1e9)
    for name in _lock_dir_entries(lock_dir):
        if not TEMP_PATTERN.fullmatch(name):
            continue
        path = os.path.join(lock_dir, name)
        try:
            if os.lstat(path).st_mtime_ns >= cutoff_ns:
                continue
        except FileNotFoundError:
            continue
        except OSError as err:
            raise _unavailable("checking the temp file", path, err) from err
        _remove_quietly(path)
        if not os.path.lexists(path):
            removed.append(name)
    return removed
