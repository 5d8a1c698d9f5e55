#!/bin/sh
# Two deployment jobs that must never run at the same time, as CI would start
# them: each wraps its work in `mcp-lockd run`, which waits its turn (FIFO),
# keeps the lease alive while the work runs, and releases it at the end.
# The work gets the grant's fencing token in MCP_LOCKD_FENCING_TOKEN: a
# downstream system that remembers the highest token it has seen can refuse a
# write from a job that lost the lock in the meantime.
#
#   MCP_LOCKD_ADDRESS=127.0.0.1:50051 examples/shell/deploy-serialized.sh /tmp/deploy.log
#
# Needs `mcp-lockd` on PATH and a service running (mcp-lockd serve).
set -eu

log=${1:-./deploy.log}

# One deployment: start and end lines around a step that takes a while.
# ($0, $1 of the inner sh are the job name and the log.)
deploy() {
  mcp-lockd run deploy --ttl 10s --holder "deploy-job-$1" -- sh -c '
    echo "start $0 token=$MCP_LOCKD_FENCING_TOKEN" >> "$1"
    sleep 2
    echo "end $0" >> "$1"
  ' "job-$1" "$log"
}

deploy 1 &
first=$!
# Start the second job once the first holds the lock, so the order is known.
until mcp-lockd status deploy | grep -q deploy-job-1; do sleep 0.1; done
deploy 2 &
second=$!

# Who holds it, and who waits (the second job shows as 1 waiter once queued).
sleep 0.3
mcp-lockd status deploy

# `run` exits with the command's exit code: a failed deployment fails the script.
wait "$first"
wait "$second"
echo "both deployments done, one at a time:"
cat "$log"
