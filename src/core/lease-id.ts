import { createHash, randomBytes } from "node:crypto";

/** A new lease id: 256 random bits, base64url (43 characters). It is a capability. */
export function newLeaseId(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * The only form of a lease id that is ever stored or indexed: lease files keep
 * this hash so a holder can renew across a restart without the id on disk.
 */
export function hashLeaseId(leaseId: string): string {
  return createHash("sha256").update(leaseId, "utf8").digest("hex");
}
