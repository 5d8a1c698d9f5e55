// The lease as the core sees it, independent of how a store keeps it.

export interface LeaseRecord {
  resource: string;
  holder: string;
  fencingToken: number;
  /** Milliseconds since the epoch. */
  acquiredAt: number;
  expiresAt: number;
  ttlMs: number;
  metadata: Record<string, string>;
  /** sha256 of the lease id; absent for leases taken through the file protocol without one. */
  leaseIdHash?: string;
  pid: number;
  hostname: string;
}

/** What a store knows about one resource. */
export type ResourceState =
  | { kind: "free"; resource: string }
  | { kind: "held"; resource: string; lease: LeaseRecord }
  | {
      /** A lease file that cannot be parsed: held by an unknown holder until `blockedUntil`. */
      kind: "unreadable";
      resource: string;
      modifiedAt: number;
      blockedUntil: number;
      reason: string;
    };

export type BlockingState = Exclude<ResourceState, { kind: "free" }>;

/** What a new lease asks of the store. */
export interface LeaseGrant {
  holder: string;
  ttlMs: number;
  metadata: Record<string, string>;
  leaseIdHash: string;
}

/** When a blocking state stops blocking. */
export function blockedUntil(state: BlockingState): number {
  return state.kind === "held" ? state.lease.expiresAt : state.blockedUntil;
}

export function holderOf(state: BlockingState): string {
  return state.kind === "held" ? state.lease.holder : "unknown";
}
