import assert from "node:assert/strict";
import type { HealthLockEntry } from "../../src/http/health-server.ts";
import type { ServiceProcess } from "./service-process.ts";

/** GET /health/locks of a running service; asserts the 200. */
export async function fetchHealthLocks(service: Pick<ServiceProcess, "httpAddress">): Promise<HealthLockEntry[]> {
  const response = await fetch(`http://${service.httpAddress}/health/locks`);
  assert.equal(response.status, 200);
  return ((await response.json()) as { locks: HealthLockEntry[] }).locks;
}
