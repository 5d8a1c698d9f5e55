"""A test driver for interop.test.ts over mcp_lockd.file_protocol (clients/python), the Python
implementation of the file protocol written from docs/protocol.md alone (standard library only).

    python3 file_lock.py <lock_dir>

Reads one JSON command per line on stdin and answers one JSON line per command on stdout:

    {"op": "acquire", "resource": "R", "holder": "h", "ttl": 30, "wait_timeout": 0}
    {"op": "renew", "fencing_token": 3}     (a lease this driver acquired; in place when it can)
    {"op": "release", "fencing_token": 3}
    {"op": "reclaim", "resource": "R"}      (removes R.lock if expired; "reclaimed": true/false)
    {"op": "state", "resource": "R"}
    {"op": "fence", "resource": "R"}        (the counter: "fence": {"kind": "absent"|"file"|"dir", "value": N})
    {"op": "sweep"}                         (removes temp files older than 60 s; "removed": [names])

Every reply has "pid" (this process, for a test that stops it).

With MCP_LOCKD_TEST_STOP_AT=guard|temp|commit|in-place[:R] in its environment, the process stops itself
(SIGSTOP) once, at that point of its next operation on R (see mcp_lockd/file_protocol.py); the
reply comes after the test sends SIGCONT.

Errors are answered as {"ok": false, "error": "<class name>", ...}: ResourceBusyError,
LeaseLostError, CorruptFenceError, InvalidArgumentError, UnavailableError...
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

from mcp_lockd import ResourceBusyError, file_protocol  # noqa: E402
from mcp_lockd.file_protocol import Grant, State  # noqa: E402


def _state_json(state: State) -> dict:
    return {
        "kind": state.kind,
        "holder": state.holder,
        "fencing_token": state.fencing_token,
        "blocked_until": state.blocked_until_ms,
        "reason": state.reason,
        "version": state.document.get("version") if state.document else None,
        "renewed_at": file_protocol.parse_time(state.document.get("renewed_at")) if state.document else None,
        "expires_at": state.expires_at_ms,
    }


def _grant_json(grant: Grant) -> dict:
    return {
        "resource": grant.resource,
        "holder": grant.holder,
        "fencing_token": grant.fencing_token,
        "acquired_at": grant.acquired_at,
        "expires_at": grant.expires_at,
        "ino": grant.identity.ino if grant.identity else None,  # of the lease file its last write left
    }


def serve(lock_dir: str) -> int:
    grants: dict = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        started = time.time_ns() / 1e6
        try:
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "acquire":
                grant = file_protocol.acquire(
                    lock_dir,
                    cmd["resource"],
                    cmd.get("holder", f"py-{os.getpid()}"),
                    cmd.get("ttl", 30),
                    cmd.get("wait_timeout", 0),
                    cmd.get("metadata"),
                )
                grants[grant.fencing_token] = grant
                reply: dict = {"ok": True, "lease": _grant_json(grant)}
            elif op == "renew":
                reply = {"ok": True, "lease": _grant_json(file_protocol.renew(grants[cmd["fencing_token"]]))}
            elif op == "release":
                reply = {"ok": True, "released": file_protocol.release(grants.pop(cmd["fencing_token"]))}
            elif op == "reclaim":
                reply = {"ok": True, "reclaimed": file_protocol.reclaim(lock_dir, cmd["resource"])}
            elif op == "fence":
                fence = file_protocol.read_fence(lock_dir, cmd["resource"])
                reply = {"ok": True, "fence": {"kind": fence.kind, "value": fence.value}}
            elif op == "sweep":
                reply = {"ok": True, "removed": file_protocol.sweep_temp_files(lock_dir)}
            elif op == "state":
                reply = {"ok": True, "state": _state_json(file_protocol.read_state(lock_dir, cmd["resource"]))}
            else:
                raise ValueError(f"unknown op {op!r}")
        except ResourceBusyError as err:
            reply = {"ok": False, "error": type(err).__name__, "message": str(err), "state": _state_json(err.state)}  # type: ignore[attr-defined]
        except Exception as err:  # reported to the test, which decides
            reply = {"ok": False, "error": type(err).__name__, "message": str(err)}
        reply["pid"] = os.getpid()
        reply["started"] = started
        reply["finished"] = time.time_ns() / 1e6
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: file_lock.py <lock_dir>   (JSON commands on stdin, one per line)", file=sys.stderr)
        sys.exit(64)
    sys.exit(serve(sys.argv[1]))
