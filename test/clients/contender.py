"""A contender for test/clients/python-exclusion.test.ts, written once for both clients of mcp_lockd:

    contender.py file <lock_dir> <resource> <cycles> <out.jsonl> <marker>    FileLockClient
    contender.py grpc <address>  <resource> <cycles> <out.jsonl> <marker>    LockClient

Does <cycles> rounds of `with client.lock(resource, ttl=10, wait=60) as lease:` around a
critical section that creates <marker> with O_EXCL (if it already exists, two holders
overlap) and removes it. Each round appends one JSON line to <out.jsonl>:

    {"who": "file-<pid>", "fencing_token": 7, "start": <ms>, "end": <ms>}

plus "violation": "<why>" when the marker already existed or the lease was lost. `start` is
taken once the grant is confirmed and `end` before leaving the block (wall-clock ms, like
Date.now()). Exit status 0 when every round completed without a violation, 3 with one.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

from mcp_lockd import FileLockClient, LeaseLostError  # noqa: E402


def main(argv: list) -> int:
    if len(argv) != 7 or argv[1] not in ("file", "grpc"):
        print(__doc__, file=sys.stderr)
        return 64
    kind, target, resource, cycles_text, out_path, marker = argv[1:]
    if kind == "grpc":
        from mcp_lockd import LockClient

        client = LockClient(target)
    else:
        client = FileLockClient(target)
    who = f"{kind}-{os.getpid()}"
    violations = 0
    with client, open(out_path, "a", encoding="utf-8") as out:
        for _ in range(int(cycles_text)):
            violation = None
            try:
                with client.lock(resource, ttl=10, wait=60, holder=who) as lease:
                    start = time.time_ns() // 1_000_000
                    try:
                        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                        os.write(fd, who.encode())
                        os.close(fd)
                    except FileExistsError:
                        violation = f"{marker} already existed at the start of the critical section"
                    time.sleep(random.uniform(0, 0.003))
                    if violation is None:
                        os.unlink(marker)
                    end = time.time_ns() // 1_000_000
            except LeaseLostError as err:  # raised on leaving the block
                violation = f"the lease was lost inside the critical section: {err}"
            record = {"who": who, "fencing_token": lease.fencing_token, "start": start, "end": end}
            if violation is not None:
                record["violation"] = violation
                violations += 1
            out.write(json.dumps(record) + "\n")
            out.flush()
            # A short pause outside the lock, so the contenders interleave.
            time.sleep(random.uniform(0, 0.005))
    return 3 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
