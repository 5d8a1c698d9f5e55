import type { LockClient } from "../../src/index.ts";
import { keepAliveDiagnostics } from "../../src/client/diagnostics.ts";

/** A "renewed" event of a LockClient's KeepAlive diagnostics (times on performance.now()). */
export interface RenewedEvent {
  at: number;
  address: string;
  resource: string;
  sentAt: number;
  expiresAt: Date;
  ttl: number;
}

/**
 * The next renewal of `resource` the client has confirmed: through `address`
 * (any when undefined), confirmed at or after `after` (performance.now()).
 */
export function nextRenewal(client: LockClient, resource: string, address?: string, after = 0): Promise<RenewedEvent> {
  const diagnostics = client[keepAliveDiagnostics];
  return new Promise((resolve) => {
    const onRenewed = (event: RenewedEvent) => {
      if (event.resource !== resource || (address !== undefined && event.address !== address) || event.at < after) return;
      diagnostics.off("renewed", onRenewed);
      resolve(event);
    };
    diagnostics.on("renewed", onRenewed);
  });
}
