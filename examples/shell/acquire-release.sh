#!/bin/sh
# A script that holds a lock across several steps of its own, with
# `mcp-lockd acquire` / `renew` / `release`, for when wrapping one command in
# `mcp-lockd run` does not fit.
#
#   MCP_LOCKD_ADDRESS=127.0.0.1:50051 examples/shell/acquire-release.sh
#
# The lease id that `acquire` prints is a capability: whoever has it can
# release or renew the lock. Keep it in the environment (never on a command
# line: arguments show in `ps`) and out of logs.
set -eu

# Test acquire's status before eval: eval of an empty output would succeed.
# --wait 30s: wait at most 30 s for the lock (exit 75 if it is still held).
lease=$(mcp-lockd acquire migrations --ttl 20s --wait 30s --holder "migrate-script-$$") || exit
eval "$lease"
export MCP_LOCKD_LEASE_ID
# Released whatever happens below (exit 76 from release means the lease had
# already expired: the work was not protected to the end).
trap 'mcp-lockd release' EXIT

echo "holding $MCP_LOCKD_RESOURCE with fencing token $MCP_LOCKD_FENCING_TOKEN until $MCP_LOCKD_EXPIRES_AT"

for step in 1 2 3; do
  echo "migration step $step (token $MCP_LOCKD_FENCING_TOKEN)"
  sleep 0.2
  # Nobody renews the lease for us: renew it well before its ttl runs out.
  # `renew` exits 76 if the lease was lost: stop at once.
  mcp-lockd renew > /dev/null
done

mcp-lockd status migrations
