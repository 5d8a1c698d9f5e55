import type { LeaseGrant, LeaseRecord } from "../../src/core/lease.ts";
import type { LeaseFileStore } from "../../src/store/lease-file-store.ts";

/** What a grant attempt returns (the store's own type, wherever the interface lives). */
type AcquireOutcome = Awaited<ReturnType<LeaseFileStore["acquire"]>>;

/**
 * The LeaseFileStore calls the chaos scripts make. The store of file
 * protocol version 1 takes the wall clock with each call; version 2 takes
 * it in its options and its methods only the first arguments. A method with
 * fewer parameters satisfies this type, so both stores do, and the extra
 * argument is ignored by version 2. (Once version 2 is all there is, call
 * the store directly.)
 */
export interface StoreCalls {
  open(): Promise<void>;
  acquire(resource: string, grant: LeaseGrant, now: () => number): Promise<AcquireOutcome>;
  renew(resource: string, leaseIdHash: string, now: () => number): Promise<LeaseRecord | undefined>;
  release(resource: string, leaseIdHash: string, now: () => number): Promise<boolean>;
}

export function storeCalls(store: LeaseFileStore): StoreCalls {
  return store;
}
