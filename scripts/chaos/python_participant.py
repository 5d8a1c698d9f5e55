"""A file-protocol participant of the chaos campaign: the Python FileLock of clients/python
(mcp_lockd.file_protocol, written from docs/protocol.md alone), with its renewal thread.

    /usr/bin/python3 python_participant.py '<config JSON>'   (see participant-config.ts)

The same life as the Node participants (participant-loop.ts): pick a resource, wait for it, hold
it a short random time writing the token to the fenced resource (fenced-resource.ts: one O_APPEND
line, accepted when its token is >= every token before it), release, repeat; every step appended
to its history file as one JSON line with time.monotonic_ns() (the same CLOCK_MONOTONIC as Node's
process.hrtime) and the wall clock. SIGTERM ends it after the current step.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

from mcp_lockd import FileLock, LockError, ResourceBusyError  # noqa: E402

config = json.loads(sys.argv[1])
stopping = False


def on_term(_signum, _frame):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, on_term)


def mono_ms() -> float:
    return time.monotonic_ns() / 1e6


def record(event: dict, at: float = None) -> None:
    event.update(mono=mono_ms() if at is None else at, wall=int(time.time() * 1000), pid=os.getpid(), who=config["name"])
    with open(config["historyFile"], "a") as f:
        f.write(json.dumps(event) + "\n")


def fenced_path(resource: str) -> str:
    return os.path.join(config["fencedDir"], f"{resource}.fenced.jsonl")


def append_fenced(resource: str, token: int, write_id: str) -> bool:
    """One O_APPEND write, then the verdict from the log's order (see fenced-resource.ts)."""
    path = fenced_path(resource)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps({"token": token, "id": write_id}) + "\n").encode())
    finally:
        os.close(fd)
    highest = 0
    with open(path) as f:
        for line in f.read().split("\n"):
            if not line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                break
            accepted = entry["token"] >= highest
            if accepted:
                highest = entry["token"]
            if entry["id"] == write_id:
                return accepted
    raise RuntimeError(f"fenced log {path} lost the write {write_id}")


def deadline_ms(lease) -> float:
    """The lease's own deadline (time.monotonic() seconds) on the mono ms scale."""
    return lease.lost.deadline * 1000


def main() -> None:
    rng = random.Random(config["seed"])
    ttl_s = config["ttlMs"] / 1000
    record({"ev": "start", "kind": "python-file"})
    attempt = writes = 0
    while not stopping:
        attempt += 1
        resource = rng.choice(config["resources"])
        wait_ms = 0 if rng.random() < 0.2 else rng.randint(200, config["maxWaitMs"])
        record({"ev": "acquire-start", "resource": resource, "attempt": attempt, "waitMs": wait_ms, "ttlMs": config["ttlMs"]})
        try:
            lease = FileLock(config["lockDir"], resource, ttl=ttl_s, wait=wait_ms / 1000, holder=config["name"]).acquire()
        except ResourceBusyError as err:
            record({"ev": "acquire-end", "resource": resource, "attempt": attempt, "outcome": "busy", "error": str(err)})
            time.sleep(rng.randint(10, 200) / 1000)
            continue
        except LockError as err:  # a guard held past its wait by a stopped process, a bad file...
            record({"ev": "acquire-end", "resource": resource, "attempt": attempt, "outcome": "error", "error": str(err)})
            time.sleep(rng.randint(10, 200) / 1000)
            continue
        token = lease.fencing_token
        last_deadline = deadline_ms(lease)
        record({"ev": "acquire-end", "resource": resource, "attempt": attempt, "outcome": "granted", "token": token, "deadline": last_deadline})
        hold_ms = rng.randint(30, 500) if rng.random() < 0.85 else rng.randint(config["ttlMs"] // 2, config["ttlMs"] * 2)
        until = mono_ms() + hold_ms
        while mono_ms() < until and not stopping:
            if lease.lost.is_set():  # also set once our own deadline has passed
                break
            if deadline_ms(lease) != last_deadline:
                last_deadline = deadline_ms(lease)
                record({"ev": "renewed", "resource": resource, "token": token, "deadline": last_deadline})
            writes += 1
            write_id = f"{os.getpid()}-{writes}"
            accepted = append_fenced(resource, token, write_id)
            record({"ev": "write", "resource": resource, "token": token, "id": write_id, "accepted": accepted, "deadline": last_deadline})
            time.sleep(rng.randint(20, 150) / 1000)
        if lease.lost.is_set():
            record({"ev": "lost", "resource": resource, "token": token, "reason": lease.lost.reason, "deadline": last_deadline})
        record({"ev": "release-start", "resource": resource, "token": token})
        was_lost = lease.lost.is_set()
        try:
            lease.release()
            record({"ev": "release-end", "resource": resource, "token": token, "released": not was_lost})
        except LockError as err:
            record({"ev": "release-end", "resource": resource, "token": token, "released": False, "error": str(err)})
        time.sleep(rng.randint(0, 150) / 1000)
    record({"ev": "exit"})


try:
    main()
except BaseException as err:  # noqa: BLE001 - every unexpected error is a finding
    record({"ev": "crash", "message": repr(err), "stack": traceback.format_exc()})
    raise
