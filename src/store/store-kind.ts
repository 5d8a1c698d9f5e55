/** The stores `serve` can keep leases in: lease files on one host (the default), or etcd for a fleet. */
export const STORE_KINDS = ["file", "etcd"] as const;

export type StoreKind = (typeof STORE_KINDS)[number];
