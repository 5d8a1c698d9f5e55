"""One job at a time through the lock files alone: no service needed.

    PYTHONPATH=clients/python /usr/bin/python3 examples/python/file_lock.py <lock-dir> report.log

The same job as service_lock.py, with FileLock: it follows docs/protocol.md,
so it also excludes the clients of an mcp-lockd service whose --lock-dir is
<lock-dir> (the service's default is ./.mcp-gateway). It needs only the
standard library.
"""

import sys

from mcp_lockd import FileLock, FileLockClient, LeaseLostError, ResourceBusyError


def append_report(path, lease, line):
    with open(path, "a", encoding="utf-8") as report:
        report.write(f"token={lease.fencing_token} {line}\n")


def main(lock_dir, report_path):
    try:
        # Polls for up to 30 s; the lease file is renewed in the background until the block ends.
        with FileLock(lock_dir, "example-file", ttl=10, wait=30) as lease:
            print(f"acquired {lease.resource} as {lease.holder}, fencing token {lease.fencing_token}")
            for step in range(1, 4):
                lease.check()  # raises LeaseLostError once the lease is lost
                append_report(report_path, lease, f"step {step}")
    except LeaseLostError as err:
        print(f"lost the lock, stopped: {err}", file=sys.stderr)
        return 1
    print("released")

    # FileLockClient has LockClient's shape: code written for one runs with the other.
    client = FileLockClient(lock_dir, holder="example-holder")
    with client.lock("example-busy", ttl=10):
        try:
            with FileLock(lock_dir, "example-busy"):
                pass
        except ResourceBusyError as err:
            until = err.expires_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            print(f"example-busy is held by {err.holder} until {until}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
