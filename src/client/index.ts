// The TypeScript client of mcp-lockd: `import { LockClient } from "mcp-lockd"`.
export { LockClient } from "./lock-client.ts";
export { Lock } from "./lock.ts";
export {
  AccessDeniedError,
  InvalidArgumentError,
  LeaseLostError,
  LockClientError,
  ResourceBusyError,
  UnavailableError,
  WatcherTooSlowError,
  type LeaseLossReason,
} from "./errors.ts";
export type {
  AcquireOptions,
  ForceReleaseResult,
  LockClientOptions,
  LockClientTls,
  LockEventInfo,
  LockInfo,
  ReconnectOptions,
  Renewal,
  WatchOptions,
} from "./types.ts";
