"""Holds leases through mcp_lockd (clients/python) for the node:test drivers in test/clients/.

    lease_driver.py grpc <host:port> [<options>]   LockClient (one client, so one KeepAlive stream)
    lease_driver.py file <lock_dir>                FileLockClient (the file protocol alone)

<options> is a JSON object of LockClient keyword arguments, e.g. {"connect_timeout": 1}.

Reads one JSON command per line on stdin; each gets one JSON reply line on
stdout carrying the command's "seq". Commands run on their own threads, so a
waiting lock does not block the others. Asynchronous events are lines too:

    {"seq": 1, "op": "lock", "id": "a", "resource": "R", "ttl": 3, "wait": 30, "holder": "h"}
        -> {"seq": 1, "ok": true, "lease": {...}}   or {"ok": false, "error": "<class>", ...}
        ("watch": false: no thread waiting for its lost event, which would outlive the release)
    {"seq": 2, "op": "release", "id": "a"}   (leaves the `with` block)
        -> {"ok": true}   or {"ok": false, "error": "LeaseLostError", "reason": ...}
        ("once_stream_open": true: first waits (up to 5 s) until the client's KeepAlive stream is
        open, then releases at once, racing the stream's opening; grpc only)
    {"seq": 3, "op": "state", "id": "a"}      -> {"ok": true, "lost": false, "expires_at": ms, ...}
    {"seq": 4, "op": "list"}                  -> {"ok": true, "locks": [...]}
    {"seq": 5, "op": "secrets", "id": "a"}    -> whether the lease id shows in repr() or the logs
    {"seq": 6, "op": "session"}   (grpc only)
        -> {"ok": true, "threads": threading.active_count(), "thread_names": [...],
            "streams_opened": n, "renewals_confirmed": n}
    {"event": "lost", "id": "a", "at": ms, "reason": ..., "expires_at": ms}   when lease.lost fires
    {"event": "renewed", "address": "host:port", "at": ms}   each confirmed renewal (grpc only)

Times are wall-clock ms since the epoch, like Date.now().
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import mcp_lockd  # noqa: E402
from mcp_lockd import FileLockClient, LockError  # noqa: E402

_out_lock = threading.Lock()
# Everything mcp_lockd logs, at every level, kept to look for lease ids in it.
_log_buffer = io.StringIO()


def emit(message: dict) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def ms(dt) -> float:
    return dt.timestamp() * 1000


def lease_json(lease) -> dict:
    return {
        "resource": lease.resource,
        "holder": lease.holder,
        "fencing_token": lease.fencing_token,
        "acquired_at": ms(lease.acquired_at),
        "expires_at": ms(lease.expires_at),
        "ttl": lease.ttl,
    }


def error_json(err: BaseException) -> dict:
    reply = {"ok": False, "error": type(err).__name__, "message": str(err)}
    for attr in ("holder", "reason", "field", "code", "resource"):
        if hasattr(err, attr):
            reply[attr] = getattr(err, attr)
    expires = getattr(err, "expires_at", None)
    if expires is not None:
        reply["expires_at"] = ms(expires)
    reply["is_lock_error"] = isinstance(err, LockError)
    return reply


class Driver:
    def __init__(self, kind: str, target: str, options: dict):
        self.kind = kind
        if kind == "grpc":
            self.client = mcp_lockd.LockClient(target, **options)
            self.client._session.on_renewed = lambda address, _at: emit(
                {"event": "renewed", "address": address, "at": time.time() * 1000}
            )
        else:
            self.client = FileLockClient(target)
        self.contexts: dict = {}
        self.leases: dict = {}

    def watch(self, name: str, lease) -> None:
        def run() -> None:
            lease.lost.wait()
            at = time.time() * 1000
            if lease.released and lease.lost.reason is None:
                return
            emit({"event": "lost", "id": name, "at": at, "reason": lease.lost.reason, "expires_at": ms(lease.expires_at)})

        threading.Thread(target=run, daemon=True).start()

    def op_lock(self, cmd: dict) -> dict:
        context = self.client.lock(
            cmd["resource"],
            ttl=cmd.get("ttl", 30),
            wait=cmd.get("wait"),
            holder=cmd.get("holder"),
            metadata=cmd.get("metadata"),
        )
        lease = context.__enter__()
        granted_at = time.time() * 1000
        self.contexts[cmd["id"]] = context
        self.leases[cmd["id"]] = lease
        if cmd.get("watch", True):
            self.watch(cmd["id"], lease)
        return {"ok": True, "lease": lease_json(lease), "granted_at": granted_at}

    def op_release(self, cmd: dict) -> dict:
        context = self.contexts.pop(cmd["id"])
        lease = self.leases[cmd["id"]]
        if cmd.get("once_stream_open"):
            session = self.client._session
            deadline = time.monotonic() + 5
            while session._stream is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("the KeepAlive stream did not open within 5 s")
                time.sleep(0.0005)
        started = time.time() * 1000
        context.__exit__(None, None, None)  # raises LeaseLostError if it was lost
        return {"ok": True, "started": started, "lost": lease.lost.is_set()}

    def op_state(self, cmd: dict) -> dict:
        lease = self.leases[cmd["id"]]
        reply = {
            "ok": True,
            "lost": lease.lost.is_set(),
            "reason": lease.lost.reason,
            "released": lease.released,
            "expires_at": ms(lease.expires_at),
            "remaining": lease.remaining(),
        }
        session = getattr(self.client, "_session", None)
        if session is not None:
            reply["streams_opened"] = session.streams_opened
            reply["renewals_confirmed"] = session.renewals_confirmed
            reply["renewals_failed"] = session.renewals_failed
        return reply

    def op_list(self, cmd: dict) -> dict:
        return {
            "ok": True,
            "locks": [
                {
                    "resource": info.resource,
                    "holder": info.holder,
                    "fencing_token": info.fencing_token,
                    "expires_at": ms(info.expires_at),
                    "ttl": info.ttl,
                    "waiters": info.waiters,
                    "state": info.state,
                    "metadata": info.metadata,
                }
                for info in self.client.list(cmd.get("prefix", ""))
            ],
        }

    def op_session(self, cmd: dict) -> dict:
        session = self.client._session
        return {
            "ok": True,
            "threads": threading.active_count(),
            "thread_names": sorted(thread.name for thread in threading.enumerate()),
            "streams_opened": session.streams_opened,
            "renewals_confirmed": session.renewals_confirmed,
        }

    def op_secrets(self, cmd: dict) -> dict:
        lease = self.leases[cmd["id"]]
        lease_id = getattr(lease, "lease_id", None)
        texts = {"repr": repr(lease), "str": str(lease), "client": repr(self.client), "log": _log_buffer.getvalue()}
        return {
            "ok": True,
            "has_lease_id": bool(lease_id),
            "leaked_in": [name for name, text in texts.items() if lease_id and lease_id in text],
            "log_lines": _log_buffer.getvalue().count("\n"),
        }

    def handle(self, cmd: dict) -> None:
        try:
            reply = getattr(self, "op_" + cmd["op"])(cmd)
        except LockError as err:
            reply = error_json(err)
        except Exception as err:  # reported to the test, which decides
            reply = {"ok": False, "error": type(err).__name__, "message": repr(err)}
        reply["seq"] = cmd.get("seq")
        emit(reply)


def main(argv: list) -> int:
    if len(argv) not in (3, 4) or argv[1] not in ("grpc", "file"):
        print(__doc__, file=sys.stderr)
        return 64
    handler = logging.StreamHandler(_log_buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("mcp_lockd")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    logger.addHandler(logging.StreamHandler(sys.stderr))
    driver = Driver(argv[1], argv[2], json.loads(argv[3]) if len(argv) == 4 else {})
    emit({"event": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        if line.strip():
            cmd = json.loads(line)
            threading.Thread(target=driver.handle, args=(cmd,), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
