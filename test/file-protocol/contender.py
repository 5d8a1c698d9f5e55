"""A file-protocol contender for the interop tests, using mcp_lockd.FileLock (clients/python).

    contender.py <lock_dir> <resource> <cycles> <out.jsonl> [marker]

Does <cycles> rounds of: acquire <resource> (wait up to 30 s, ttl 10 s) →
critical section → release. The critical section creates the marker file
(default <dir of out.jsonl>/critical) with O_EXCL: if it already exists, two
holders overlap. Each round appends one JSON line to <out.jsonl>:

    {"who": "py-<pid>", "fencing_token": 7, "start": <ms>, "end": <ms>}

plus "violation": "<why>" when the marker already existed or the lease was
lost. `start` is taken once the grant is confirmed and `end` just before the
release starts (whole milliseconds of the wall clock, like Date.now()). Exit
status 0 when every round completed without a violation, 3 when a violation
was seen, 1 on errors.
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

from mcp_lockd import FileLock, LeaseLostError  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) not in (5, 6):
        print(__doc__, file=sys.stderr)
        return 64
    lock_dir, resource, cycles_text, out_path = argv[1:5]
    marker = argv[5] if len(argv) == 6 else os.path.join(os.path.dirname(os.path.abspath(out_path)), "critical")
    cycles = int(cycles_text)
    who = f"py-{os.getpid()}"
    violations = 0
    with open(out_path, "a", encoding="utf-8") as out:
        for _ in range(cycles):
            violation = None
            try:
                with FileLock(lock_dir, resource, ttl=10, wait=30, holder=who) as lease:
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
            except LeaseLostError as err:  # raised on leaving the block: lost, or no longer ours at release
                violation = f"{violation or ''} {err}".strip()
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
