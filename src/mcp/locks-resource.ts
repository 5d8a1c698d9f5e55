import type { McpServer } from "./sdk.ts";
import { ErrorCode, McpError, SubscribeRequestSchema, UnsubscribeRequestSchema } from "./sdk.ts";
import type { LockChangeSource } from "./lock-change-source.ts";
import { listEntries, type LockToolsContext } from "./lock-tools.ts";

// `locks://status`: every held lock as JSON (the lock_status entries). A
// client that subscribes gets notifications/resources/updated when the set
// of locks changes, from a LockChangeSource that runs only while subscribed.

export const LOCKS_STATUS_URI = "locks://status";

/** Registers the resource and its subscription; returns a function that ends the subscription. */
export function registerLocksResource(
  server: McpServer,
  context: Pick<LockToolsContext, "client" | "locks">,
  changes: LockChangeSource,
): () => void {
  server.registerResource(
    "locks",
    LOCKS_STATUS_URI,
    {
      title: "Held locks",
      description:
        "Every held lock as JSON ({\"locks\": [...]}, the entries of lock_status). Subscribe to be notified when a lock is taken, released, handed over or expires.",
      mimeType: "application/json",
    },
    async (uri) => ({
      contents: [
        { uri: uri.href, mimeType: "application/json", text: JSON.stringify({ locks: await listEntries(context, "") }) },
      ],
    }),
  );

  server.server.registerCapabilities({ resources: { subscribe: true } });
  let subscription: Promise<() => void> | undefined;
  const checkUri = (uri: string) => {
    if (uri !== LOCKS_STATUS_URI) {
      throw new McpError(ErrorCode.InvalidParams, `unknown resource ${JSON.stringify(uri)}: only ${LOCKS_STATUS_URI} can be subscribed to`);
    }
  };
  const unsubscribe = () => {
    const ending = subscription;
    subscription = undefined;
    void ending?.then((stop) => stop());
  };
  server.server.setRequestHandler(SubscribeRequestSchema, async (request) => {
    checkUri(request.params.uri);
    // Answered once changes from now on will be notified.
    subscription ??= changes.subscribe(() => {
      void server.server.sendResourceUpdated({ uri: LOCKS_STATUS_URI }).catch(() => {});
    });
    await subscription;
    return {};
  });
  server.server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
    checkUri(request.params.uri);
    unsubscribe();
    return {};
  });
  return unsubscribe;
}
