#!/usr/bin/python3
"""/usr/bin/python3 scripts/measure-python-renewal.py [RENEWALS] [LOCK_DIR_PARENT] [ROUNDS]

The cost of one renewal by the Python file-protocol participant (clients/python), each way:
in place (file protocol version 3: pwrite + fdatasync of its own lease file) and guarded
(version 2's way: guard mkdir, read, temp file + fsync, rename, lock-dir fsync, guard rmdir).
RENEWALS (default 1,000) renewals of one lease, one after the other, timed per call with
time.perf_counter, in a fresh lock dir under LOCK_DIR_PARENT (default: the system temp dir;
give a directory on the disk you care about), ROUNDS times (default 3) alternating the two ways.
Prints the mean, p50, p99 and max per call, and calls per second, for each way and round.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "clients", "python"))

from mcp_lockd import file_protocol as fp  # noqa: E402


def measure(lock_dir: str, renew, count: int) -> "list[float]":
    grant = fp.acquire(lock_dir, "bench", "bench", 3600)
    renew(grant)  # one untimed call first (warm caches)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        renew(grant)
        times.append(time.perf_counter() - started)
    fp.release(grant)
    return times


def report(name: str, times: "list[float]") -> None:
    ordered = sorted(times)
    ms = lambda s: f"{s * 1000:.3f} ms"  # noqa: E731
    print(
        f"{name:8} n={len(times)} mean {ms(statistics.fmean(times))} p50 {ms(ordered[len(ordered) // 2])} "
        f"p99 {ms(ordered[int(len(ordered) * 0.99) - 1])} max {ms(ordered[-1])} ({len(times) / sum(times):,.0f}/s)"
    )


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    parent = sys.argv[2] if len(sys.argv) > 2 else None
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    lock_dir = tempfile.mkdtemp(prefix="mcp-lockd-renewal-", dir=parent)
    try:
        print(f"{count} renewals per way and round, lock dir {lock_dir}")
        for round_number in range(1, rounds + 1):
            print(f"round {round_number}")
            report("in-place", measure(lock_dir, fp.renew, count))
            report("guarded", measure(lock_dir, fp._renew_guarded, count))
    finally:
        shutil.rmtree(lock_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
