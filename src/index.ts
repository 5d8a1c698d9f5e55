// Public API of the mcp-lockd package: the TypeScript client.
// The service itself, for embedding, is in "mcp-lockd/server" (src/server.ts).
export * from "./client/index.ts";
