"""One job at a time, through the mcp-lockd service (gRPC).

    PYTHONPATH=clients/python MCP_LOCKD_ADDRESS=127.0.0.1:50051 \
        /usr/bin/python3 examples/python/service_lock.py report.log

Appends three lines to report.log while holding the lock "example-report",
each carrying the lease's fencing token (what a downstream system would check),
then shows what a second client sees while the lock is held.
"""

import sys

from mcp_lockd import LeaseLostError, LockClient, ResourceBusyError


def append_report(path, lease, line):
    # A write to a downstream system: it carries the fencing token, so that the system can
    # refuse writes from a holder that has since lost the lock.
    with open(path, "a", encoding="utf-8") as report:
        report.write(f"token={lease.fencing_token} {line}\n")


def main(report_path):
    with LockClient() as client:  # MCP_LOCKD_ADDRESS, else 127.0.0.1:50051
        try:
            # Waits up to 30 s in the service's FIFO queue; renewed in the background until the block ends.
            with client.lock("example-report", ttl=10, wait=30) as lease:
                print(f"acquired {lease.resource} as {lease.holder}, fencing token {lease.fencing_token}")
                for step in range(1, 4):
                    lease.check()  # raises LeaseLostError once the lock is lost: stop at once
                    append_report(report_path, lease, f"step {step}")
        except LeaseLostError as err:
            print(f"lost the lock, stopped: {err}", file=sys.stderr)
            return 1
        print("released")

        # While someone holds a lock, trying once fails with who holds it and until when.
        with client.lock("example-busy", ttl=10, holder="example-holder"):
            try:
                with LockClient() as other, other.lock("example-busy"):
                    pass
            except ResourceBusyError as err:
                until = err.expires_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
                print(f"example-busy is held by {err.holder} until {until}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
