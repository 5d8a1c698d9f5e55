import { DEFAULT_ADDRESS } from "./client-options.ts";

// `mcp-lockd mcp --help`, apart from the command itself so that the other
// commands (serve above all) do not load the MCP SDK: main.ts imports
// mcp-command.ts only when `mcp` runs.

export const MCP_USAGE = `Usage:
  mcp-lockd mcp [--address HOST:PORT[,...]] [--holder NAME]

Runs a Model Context Protocol server on stdin/stdout for one MCP client (an
agent, an IDE, an MCP gateway). Configure it as
  {"mcpServers": {"locks": {"command": "mcp-lockd", "args": ["mcp"]}}}
Tools: lock_acquire {resource, ttl_seconds?, wait_seconds?, purpose?},
lock_release {resource}, lock_status {prefix?}; resource locks://status
(JSON, subscribable). Leases are kept alive while the session lives and
released when it ends (stdin closes); if the process is killed they expire
after their ttl. See docs/mcp.md.
  --address  MCP_LOCKD_ADDRESS, else ${DEFAULT_ADDRESS}; several replicas separated
             by commas: the session's leases move to the next when one is down
  --cacert F, --cert F --key F, --token-file F: TLS, a client certificate, a bearer
             token (MCP_LOCKD_CACERT, MCP_LOCKD_CERT, MCP_LOCKD_KEY, MCP_LOCKD_TOKEN_FILE)
  --holder   the name others see (default: user@host pid N mcp CLIENT, CLIENT
             being the name the MCP client gives in initialize)
`;
