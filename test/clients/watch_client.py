"""Watches with mcp_lockd.LockClient.watch() and prints each event as a JSON line.

    watch_client.py ADDRESS PREFIX STOP_AFTER_TYPE STOP_AFTER_RESOURCE

Leaves the loop (which cancels the watch) after the first event of
STOP_AFTER_TYPE on STOP_AFTER_RESOURCE, then prints {"done": true}. Errors
are printed as {"error": CLASS, "message": ...}.
"""

import json
import sys

from mcp_lockd import LockClient, LockError


def main() -> int:
    address, prefix, stop_type, stop_resource = sys.argv[1:5]
    with LockClient(address, connect_timeout=5) as client:
        try:
            for event in client.watch(prefix):
                line = {
                    "type": event.type,
                    "resource": event.resource,
                    "state": event.state,
                    "holder": event.holder,
                    "fencing_token": event.fencing_token,
                    "ttl": event.ttl,
                    "waiters": event.waiters,
                    "has_times": event.acquired_at is not None and event.expires_at is not None,
                    "time_is_utc": event.time.utcoffset() is not None and event.time.utcoffset().total_seconds() == 0,
                    "previous_holder": event.previous_holder,
                    "previous_fencing_token": event.previous_fencing_token,
                }
                print(json.dumps(line), flush=True)
                if event.type == stop_type and event.resource == stop_resource:
                    break
        except LockError as err:
            print(json.dumps({"error": type(err).__name__, "message": str(err)}), flush=True)
            return 1
    print(json.dumps({"done": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
