// The parts of the MCP SDK (@modelcontextprotocol/sdk) that mcp-lockd uses,
// imported in one place. Why the @ts-types lines: the SDK's package.json maps
// "./*" to types "./dist/esm/*.d.ts", so "server/mcp.js" names a
// "server/mcp.js.d.ts" that does not exist. tsc falls back to the .d.ts next
// to the JavaScript; `deno check` does not, so it is pointed at the real
// declarations (a comment to Node and tsc; Deno runs src/ from the repository).

// @ts-types="../../node_modules/@modelcontextprotocol/sdk/dist/esm/server/mcp.d.ts"
export { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
// @ts-types="../../node_modules/@modelcontextprotocol/sdk/dist/esm/server/stdio.d.ts"
export { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
// @ts-types="../../node_modules/@modelcontextprotocol/sdk/dist/esm/types.d.ts"
export { ErrorCode, McpError, SubscribeRequestSchema, UnsubscribeRequestSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
