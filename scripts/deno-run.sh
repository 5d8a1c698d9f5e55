#!/usr/bin/env bash
# Runs the mcp-lockd command line from src/ under Deno (`npm run start:deno`),
# with only the permissions `serve` needs: read and write in the lock dir
# (with --store etcd, no lock dir but the network to etcd's members, and its
# TLS files' directories to read), the network on the two listen hosts, the environment (MCP_LOCKD_*, and
# grpc-js reads GRPC_* and proxy variables), and the host name (written into
# lease files). The lock dir and hosts are found the way the CLI finds them:
# flag, then environment variable, then default. Paths with commas cannot be
# listed in Deno's permission flags; use MCP_LOCKD_DENO_FLAGS=-A for those.
#
# `mcp` (the MCP server on stdio) gets less: no files at all, the network to
# the service's address only (--address, else MCP_LOCKD_ADDRESS, else
# 127.0.0.1:50051), the environment, and the host name and user (uid, for
# the user name when USER is unset): the default holder name says who and where.
# For an address that is not HOST:PORT (unix:/path, dns:...), override with
# MCP_LOCKD_DENO_FLAGS.
#
# Deno is the npm package `deno`; its binary is exec'ed directly (not through
# `npx deno` or the package's bin.cjs fallback, which run it as a child and do
# not pass SIGTERM on), so signals reach the service.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deno="$root/node_modules/deno/deno"
if [[ ! -x "$deno" ]]; then
  # The package's postinstall links the binary here; without it, ask its own resolver.
  deno="$(node -e 'process.stdout.write(require(process.argv[1]).runInstall())' "$root/node_modules/deno/install_api.cjs")"
fi

lock_dir="${MCP_LOCKD_DIR:-./.mcp-gateway}"
grpc_listen="${MCP_LOCKD_GRPC_LISTEN:-127.0.0.1:50051}"
http_listen="${MCP_LOCKD_HTTP_LISTEN:-127.0.0.1:8000}"
# Certificates and the auth file: their directories are watched for changes
# (a rotation replaces the file by rename), so each directory is readable.
config_files=()
store="${MCP_LOCKD_STORE:-file}"
etcd_endpoints="${MCP_LOCKD_ETCD_ENDPOINTS:-}"
for name in MCP_LOCKD_CERT_FILE MCP_LOCKD_KEY_FILE MCP_LOCKD_TRUSTED_CA_FILE MCP_LOCKD_AUTH_FILE MCP_LOCKD_ETCD_CACERT MCP_LOCKD_ETCD_CERT MCP_LOCKD_ETCD_KEY; do
  if [[ -n "${!name:-}" ]]; then config_files+=("${!name}"); fi
done
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --cert-file | --key-file | --trusted-ca-file | --auth-file | --etcd-cacert | --etcd-cert | --etcd-key) config_files+=("${args[i + 1]:-}") ;;
    --cert-file=* | --key-file=* | --trusted-ca-file=* | --auth-file=* | --etcd-cacert=* | --etcd-cert=* | --etcd-key=*) config_files+=("${args[i]#*=}") ;;
    --store) store="${args[i + 1]:-}" ;;
    --store=*) store="${args[i]#*=}" ;;
    --etcd-endpoints) etcd_endpoints="${args[i + 1]:-}" ;;
    --etcd-endpoints=*) etcd_endpoints="${args[i]#*=}" ;;
    --lock-dir) lock_dir="${args[i + 1]:-}" ;;
    --lock-dir=*) lock_dir="${args[i]#*=}" ;;
    --grpc-listen) grpc_listen="${args[i + 1]:-}" ;;
    --grpc-listen=*) grpc_listen="${args[i]#*=}" ;;
    --http-listen) http_listen="${args[i + 1]:-}" ;;
    --http-listen=*) http_listen="${args[i]#*=}" ;;
  esac
done
# HOST:PORT or [V6]:PORT -> the host part, as Deno's --allow-net lists it.
# Deno checks the address a name resolves to, so "localhost" also allows the
# loopback addresses; for other names, listen on an address (or override).
host_of() {
  local host="${1%:*}"
  if [[ "$host" == localhost ]]; then printf 'localhost,127.0.0.1,[::1]'; else printf '%s' "$host"; fi
}

config_dirs=""
for file in "${config_files[@]}"; do config_dirs+=",$(dirname -- "$file")"; done
address="${MCP_LOCKD_ADDRESS:-127.0.0.1:50051}"
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --address) address="${args[i + 1]:-}" ;;
    --address=*) address="${args[i]#*=}" ;;
  esac
done

if [[ -n "${MCP_LOCKD_DENO_FLAGS:-}" ]]; then
  # shellcheck disable=SC2206 # word splitting of the override is intended
  permissions=(${MCP_LOCKD_DENO_FLAGS})
elif [[ "${1:-}" == mcp ]]; then
  # HOST:PORT as Deno's --allow-net takes it; "localhost" also allows the loopback addresses.
  if [[ "${address%:*}" == localhost ]]; then
    port="${address##*:}"
    net="localhost:$port,127.0.0.1:$port,[::1]:$port"
  else
    net="$address"
  fi
  permissions=(
    "--allow-net=$net"
    --allow-env
    --allow-sys=hostname,uid
  )
elif [[ "$store" == etcd ]]; then
  # No lock dir: the leases live in etcd, whose members' hosts (scheme and
  # port stripped: a host name is looked up, which Deno checks without a port) are reached.
  etcd_net=""
  IFS=',' read -ra members <<<"$etcd_endpoints"
  for member in "${members[@]}"; do
    member="${member#*://}"
    etcd_net+=",$(host_of "${member%/}")"
  done
  permissions=(
    "--allow-net=$(host_of "$grpc_listen"),$(host_of "$http_listen")$etcd_net"
    --allow-env
    --allow-sys=hostname
  )
  if [[ -n "$config_dirs" ]]; then permissions+=("--allow-read=${config_dirs#,}"); fi
else
  permissions=(
    "--allow-read=$lock_dir$config_dirs"
    "--allow-write=$lock_dir"
    "--allow-net=$(host_of "$grpc_listen"),$(host_of "$http_listen")"
    --allow-env
    --allow-sys=hostname
  )
fi
exec "$deno" run --quiet --no-prompt "${permissions[@]}" "$root/src/cli/deno-entry.ts" "$@"
