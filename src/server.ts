// Public API for embedding the service: `import { startService } from "mcp-lockd/server"`.
export { startService, type RunningService, type ServiceOptions } from "./service.ts";
export { LockManager, type AcquireInput, type GrantedLease } from "./core/lock-manager.ts";
export { LeaseFileStore } from "./store/lease-file-store.ts";
export type { LeaseStore } from "./core/lease-store.ts";
export * from "./core/errors.ts";
