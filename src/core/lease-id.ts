import { createHash, randomBytes } from "node:crypto";

/**
 * A new lease id: 256 random bits, base64url (43 characters). It is a
 * capability. Never starting with "-", so that `mcp-lockd release ID` and
 * other command lines take it as an argument, not an option (1 id in 64 would
 * otherwise; redrawing those costs under 0.03 bits).
 */
export function newLeaseId(): string {
  for (;;) {
    const id = randomBytes(32).toString("base64url");
    if (!id.startsWith("-")) return id;
  }
}

/**
 * The only form of a lease id that is ever stored or indexed: lease files keep
 * this hash so a holder can renew across a restart without the id on disk.
 */
export function hashLeaseId(leaseId: string): string {
  return createHash("sha256").update(leaseId, "utf8").digest("hex");
}
