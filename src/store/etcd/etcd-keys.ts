import type { LeaseRecord } from "../../core/lease.ts";

// Where the etcd store keeps a resource, under the deployment's prefix P:
//
//   P r/<resource>/h           the holder: the lease record (JSON), bound to the lease's own etcd lease
//   P r/<resource>/t           the fencing counter: the last token issued (decimal); never bound, never deleted
//   P r/<resource>/q/<hash>    a waiter, bound to its replica's session lease; FIFO order is create revision
//
// Resource names never contain '/', so "r/<resource>/" ranges over exactly one
// resource's keys, and one Range (or one watch) over "r/" sees everything.

export type ResourceKeyKind = "holder" | "counter" | "waiter";

export class EtcdKeyLayout {
  readonly prefix: string;
  readonly resourcesPrefix: Buffer;
  readonly resourcesEnd: Buffer;

  constructor(prefix: string) {
    this.prefix = prefix;
    this.resourcesPrefix = Buffer.from(`${prefix}r/`);
    this.resourcesEnd = prefixEnd(this.resourcesPrefix);
  }

  holder(resource: string): Buffer {
    return Buffer.from(`${this.prefix}r/${resource}/h`);
  }

  counter(resource: string): Buffer {
    return Buffer.from(`${this.prefix}r/${resource}/t`);
  }

  waiter(resource: string, leaseIdHash: string): Buffer {
    return Buffer.from(`${this.prefix}r/${resource}/q/${leaseIdHash}`);
  }

  /** The range of a resource's waiter keys. */
  queue(resource: string): { key: Buffer; rangeEnd: Buffer } {
    const key = Buffer.from(`${this.prefix}r/${resource}/q/`);
    return { key, rangeEnd: prefixEnd(key) };
  }

  /** What a key under the prefix is; undefined for keys this store does not write. */
  parse(key: Buffer): { resource: string; kind: ResourceKeyKind; leaseIdHash?: string } | undefined {
    const text = key.toString("utf8");
    const base = `${this.prefix}r/`;
    if (!text.startsWith(base)) return undefined;
    const rest = text.slice(base.length);
    const slash = rest.indexOf("/");
    if (slash <= 0) return undefined;
    const resource = rest.slice(0, slash);
    const tail = rest.slice(slash + 1);
    if (tail === "h") return { resource, kind: "holder" };
    if (tail === "t") return { resource, kind: "counter" };
    if (tail.startsWith("q/") && tail.length > 2) return { resource, kind: "waiter", leaseIdHash: tail.slice(2) };
    return undefined;
  }
}

/** The first key after every key that starts with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** The holder key's value. The etcd lease id is the lease's renewal handle, kept here so any replica renews it; it is never listed or logged. */
export interface HolderValue {
  lease: LeaseRecord;
  etcdLease: bigint;
}

const HOLDER_VALUE_VERSION = 1;

export function encodeHolder(value: HolderValue): Buffer {
  const { lease } = value;
  return Buffer.from(
    JSON.stringify({
      version: HOLDER_VALUE_VERSION,
      holder: lease.holder,
      fencing_token: lease.fencingToken,
      acquired_at_ms: lease.acquiredAt,
      expires_at_ms: lease.expiresAt,
      ttl_ms: lease.ttlMs,
      metadata: lease.metadata,
      lease_id_sha256: lease.leaseIdHash,
      pid: lease.pid,
      hostname: lease.hostname,
      etcd_lease: value.etcdLease.toString(),
    }),
  );
}

/** The holder value, or a reason it cannot be read (never quoting it). */
export function decodeHolder(resource: string, bytes: Buffer): HolderValue | string {
  let d: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(bytes.toString("utf8"));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return "not a JSON object";
    d = parsed as Record<string, unknown>;
  } catch {
    return "not JSON";
  }
  if (d.version !== HOLDER_VALUE_VERSION) return `unsupported version (readable: ${HOLDER_VALUE_VERSION})`;
  const numbers = ["fencing_token", "acquired_at_ms", "expires_at_ms", "ttl_ms", "pid"] as const;
  for (const field of numbers) if (typeof d[field] !== "number" || !Number.isSafeInteger(d[field])) return `${field} is not an integer`;
  if (typeof d.holder !== "string" || typeof d.hostname !== "string") return "holder or hostname is not a string";
  if (typeof d.lease_id_sha256 !== "string" && d.lease_id_sha256 !== undefined) return "lease_id_sha256 is not a string";
  if (typeof d.etcd_lease !== "string" || !/^[0-9]+$/.test(d.etcd_lease)) return "etcd_lease is not a decimal integer";
  const metadata = d.metadata;
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata) || Object.values(metadata).some((v) => typeof v !== "string")) {
    return "metadata is not an object of strings";
  }
  return {
    lease: {
      resource,
      holder: d.holder,
      fencingToken: d.fencing_token as number,
      acquiredAt: d.acquired_at_ms as number,
      expiresAt: d.expires_at_ms as number,
      ttlMs: d.ttl_ms as number,
      metadata: metadata as Record<string, string>,
      leaseIdHash: d.lease_id_sha256 as string | undefined,
      pid: d.pid as number,
      hostname: d.hostname,
    },
    etcdLease: BigInt(d.etcd_lease),
  };
}

/** The counter key's value: the last token issued; undefined when it is not a non-negative integer. */
export function decodeCounter(bytes: Buffer): number | undefined {
  const text = bytes.toString("utf8");
  if (!/^[0-9]{1,16}$/.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}
