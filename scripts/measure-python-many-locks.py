#!/usr/bin/python3
"""/usr/bin/python3 scripts/measure-python-many-locks.py GRPC_ADDRESS HTTP_ADDRESS [LOCKS] [RENEWED_LOCKS]

One Python LockClient (clients/python) takes and releases LOCKS locks (default 1,000) on one
resource, one after the other, in each of three ways: released at once; released as soon as its
KeepAlive stream is open; released after a confirmed renewal (RENEWED_LOCKS of them, default 100,
about 0.35 s each with ttl 1 s). After every release it waits (up to 5 s) until the service's
mcplockd_keepalive_streams gauge is back to 0. It prints per way: the slowest acquire, the longest
wait for the gauge, the most threads seen, the streams opened, and the threads left at the end.
Start the service with a small stream limit, so that a leak shows within a few locks:

    node bin/mcp-lockd.js serve --lock-dir "$(mktemp -d)" --grpc-listen 127.0.0.1:0 \\
        --http-listen 127.0.0.1:0 --max-streams-per-connection 10
"""

import os
import re
import sys
import threading
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "clients", "python"))

import mcp_lockd  # noqa: E402


def gauge(http_address: str) -> int:
    text = urllib.request.urlopen(f"http://{http_address}/metrics", timeout=5).read().decode()
    return int(re.search(r"^mcplockd_keepalive_streams (\d+)$", text, re.M).group(1))


def run(client, http_address: str, way: str, locks: int) -> None:
    session = client._session
    opened_before = session.streams_opened
    slowest_acquire = slowest_close = 0.0
    most_threads = 0
    started = time.monotonic()
    for i in range(locks):
        t0 = time.monotonic()
        lease = client.acquire("many", ttl=1)
        slowest_acquire = max(slowest_acquire, time.monotonic() - t0)
        if way == "once-open":
            while session._stream is None:
                time.sleep(0.0002)
        elif way == "renewed":
            renewals = session.renewals_confirmed
            while session.renewals_confirmed == renewals:
                time.sleep(0.001)
        most_threads = max(most_threads, threading.active_count())
        lease.release()
        t0 = time.monotonic()
        while gauge(http_address) != 0:
            if time.monotonic() - t0 > 5:
                sys.exit(f"{way}: lock {i}: a KeepAlive stream still open on the service 5 s after the release")
            time.sleep(0.001)
        slowest_close = max(slowest_close, time.monotonic() - t0)
    deadline = time.monotonic() + 5
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    print(
        f"{way}: {locks} locks in {time.monotonic() - started:.1f} s; slowest acquire {slowest_acquire * 1000:.0f} ms; "
        f"gauge back to 0 within {slowest_close * 1000:.0f} ms of each release; "
        f"{session.streams_opened - opened_before} streams opened; at most {most_threads} threads, "
        f"{threading.active_count()} at the end"
    )


def main(argv) -> int:
    if len(argv) not in (3, 4, 5):
        print(__doc__, file=sys.stderr)
        return 64
    grpc_address, http_address = argv[1], argv[2]
    locks = int(argv[3]) if len(argv) > 3 else 1000
    renewed = int(argv[4]) if len(argv) > 4 else 100
    with mcp_lockd.LockClient(grpc_address, timeout=5) as client:
        for way, count in (("at-once", locks), ("once-open", locks), ("renewed", renewed)):
            run(client, http_address, way, count)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
