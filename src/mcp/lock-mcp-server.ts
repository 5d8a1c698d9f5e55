import { McpServer } from "./sdk.ts";
import type { LockClient } from "../client/index.ts";
import { VERSION } from "../cli/version.ts";
import type { LockChangeSource } from "./lock-change-source.ts";
import { registerLockTools } from "./lock-tools.ts";
import { registerLocksResource } from "./locks-resource.ts";
import { SessionLocks } from "./session-locks.ts";

// One MCP session's server: the lock tools and the locks://status resource
// over a LockClient. It holds no lock state of its own beyond which leases
// this session holds (SessionLocks); the service decides everything else.

export interface LockMcpServerOptions {
  client: LockClient;
  address: string;
  changes: LockChangeSource;
  /** The holder name for this session's locks; gets the MCP client's name once `initialize` has told it. */
  holder: (clientName: string | undefined) => string;
}

export interface LockMcpServer {
  server: McpServer;
  locks: SessionLocks;
  /** Ends the subscription; the caller closes the transport and the client (which releases the leases). */
  close(): void;
}

const INSTRUCTIONS =
  "Named locks shared with other agents, gateway instances, CI jobs and scripts. Take a lock (lock_acquire) before work that must not run twice at once, " +
  "pass its fencing token on to whatever checks it, and release it (lock_release) when done. Locks are kept alive while this session lives and released when it ends.";

export function createLockMcpServer(options: LockMcpServerOptions): LockMcpServer {
  const server = new McpServer(
    { name: "mcp-lockd", version: VERSION },
    { capabilities: { logging: {} }, instructions: INSTRUCTIONS },
  );
  const locks = new SessionLocks(options.client, (lost) => {
    // At once, to a client that shows logs; the next tool result says it again.
    void server.server
      .sendLoggingMessage({
        level: "error",
        logger: "mcp-lockd",
        data: { event: "lock_lost", ...lost },
      })
      .catch(() => {});
  });
  const context = {
    client: options.client,
    locks,
    address: options.address,
    holder: () => options.holder(server.server.getClientVersion()?.name),
  };
  registerLockTools(server, context);
  const endSubscription = registerLocksResource(server, context, options.changes);
  return {
    server,
    locks,
    close() {
      endSubscription();
      options.changes.close();
    },
  };
}
