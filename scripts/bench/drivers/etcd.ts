import {
  credentials,
  makeGenericClientConstructor,
  type Client,
  type ClientDuplexStream,
  type ServiceDefinition,
  type ServiceError,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { sharedNow } from "../clock.ts";
import { ETCD_PROTO_DIR } from "../paths.ts";
import type { Target } from "../protocol.ts";
import type { Listing, LockClient, LockDriver, Release, RenewalListener, RenewalStream } from "./driver.ts";

/** Lease ttl of W1 to W4 (seconds): far longer than any of them runs. */
const CYCLE_TTL = 60;

// int64 fields as decimal strings: lease ids use all 63 bits.
const definition = loadSync(["v3lockpb/v3lock.proto", "etcdserverpb/rpc.proto"], {
  includeDirs: [ETCD_PROTO_DIR],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
});
const lockService = definition["v3lockpb.Lock"] as ServiceDefinition;
const leaseService = definition["etcdserverpb.Lease"] as ServiceDefinition;
const kvService = definition["etcdserverpb.KV"] as ServiceDefinition;
/** KV with Range answers left undecoded, so a listing is timed to its last byte, as the HTTP listing is. */
const rawKvService: ServiceDefinition = {
  ...kvService,
  Range: { ...kvService.Range!, responseDeserialize: (bytes: Buffer) => bytes },
};
const LockClientCtor = makeGenericClientConstructor(lockService, "Lock");
const LeaseClientCtor = makeGenericClientConstructor(leaseService, "Lease");
const RawKvClientCtor = makeGenericClientConstructor(rawKvService, "KV");

interface LeaseGrantResponse {
  ID: string;
  TTL: string;
  error: string;
}
interface LockResponse {
  key: Buffer;
}
interface RangeResponse {
  kvs: unknown[];
}
interface LeaseKeepAliveResponse {
  ID: string;
  TTL: string;
}

function call<Res>(client: Client, method: string, request: object): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (req: object, cb: (err: ServiceError | null, res: Res) => void) => void>)[method]!;
    fn.call(client, request, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

/** The end of the key range that holds exactly the keys starting with `prefix`. */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // every key from `prefix` on
}

/**
 * etcd 3.4 through its own gRPC APIs: v3lock Lock/Unlock bound to a lease,
 * Lease grant/revoke/keepalive, KV Range. Each client has its own HTTP/2
 * connection shared by its three service stubs.
 */
export class EtcdDriver implements LockDriver {
  constructor(private readonly target: Target) {
    if (!target.grpcAddress) throw new Error("etcd target needs a grpc address");
  }

  async openClient(): Promise<LockClient> {
    const lock = new LockClientCtor(this.target.grpcAddress!, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
    const channelOverride = lock.getChannel();
    const lease = new LeaseClientCtor(this.target.grpcAddress!, credentials.createInsecure(), { channelOverride });
    const kv = new RawKvClientCtor(this.target.grpcAddress!, credentials.createInsecure(), { channelOverride });
    await new Promise<void>((resolve, reject) => lock.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())));
    return new EtcdClient(lock, lease, kv);
  }
}

class EtcdClient implements LockClient {
  /** The lease W1 to W3 lock with, granted once per client ("pre-granted"). */
  private sessionLease: Promise<string> | undefined;

  constructor(
    private readonly lock: Client,
    private readonly lease: Client,
    private readonly kv: Client,
  ) {}

  private async grant(ttlSeconds: number): Promise<string> {
    const response = await call<LeaseGrantResponse>(this.lease, "LeaseGrant", { TTL: ttlSeconds, ID: 0 });
    if (response.error) throw new Error(`LeaseGrant: ${response.error}`);
    return response.ID;
  }

  private session(): Promise<string> {
    return (this.sessionLease ??= this.grant(CYCLE_TTL));
  }

  private async lockName(resource: string, leaseId: string): Promise<Buffer> {
    return (await call<LockResponse>(this.lock, "Lock", { name: Buffer.from(resource), lease: leaseId })).key;
  }

  private async unlock(key: Buffer): Promise<void> {
    await call(this.lock, "Unlock", { key });
  }

  async acquireRelease(resource: string): Promise<void> {
    // v3lock has no try-once: on a free name Lock answers at once.
    await this.unlock(await this.lockName(resource, await this.session()));
  }

  async acquireWaiting(resource: string): Promise<Release> {
    const key = await this.lockName(resource, await this.session());
    return () => this.unlock(key);
  }

  async lifecycle(resource: string): Promise<void> {
    const leaseId = await this.grant(CYCLE_TTL);
    await this.unlock(await this.lockName(resource, leaseId));
    await call(this.lease, "LeaseRevoke", { ID: leaseId });
  }

  async hold(resource: string, ttlSeconds: number): Promise<string> {
    const leaseId = await this.grant(ttlSeconds);
    await this.lockName(resource, leaseId);
    return leaseId;
  }

  openRenewalStream(listener: RenewalListener): RenewalStream {
    const stream = (this.lease as unknown as { LeaseKeepAlive(): ClientDuplexStream<{ ID: string }, LeaseKeepAliveResponse> }).LeaseKeepAlive();
    let closed = false;
    const finish = (error: Error | undefined) => {
      if (closed) return;
      closed = true;
      listener.onClosed(error);
    };
    // etcd answers a lease it no longer has with TTL 0 or less.
    stream.on("data", (response: LeaseKeepAliveResponse) => listener.onAnswer(response.ID, Number(response.TTL) > 0));
    stream.on("error", (err: ServiceError) => finish(err));
    stream.on("end", () => finish(undefined));
    return {
      renew: (leaseKey) => void stream.write({ ID: leaseKey }),
      close: () => {
        closed = true;
        stream.end();
      },
    };
  }

  async list(prefix: string): Promise<Listing> {
    const key = Buffer.from(prefix);
    const started = sharedNow();
    const bytes = await call<Buffer>(this.kv, "Range", { key, range_end: prefixEnd(key) });
    const elapsedMs = sharedNow() - started;
    const response = kvService.Range!.responseDeserialize(bytes) as RangeResponse;
    return { entries: response.kvs.length, elapsedMs };
  }

  async close(): Promise<void> {
    if (this.sessionLease) {
      const leaseId = await this.sessionLease.catch(() => undefined);
      if (leaseId !== undefined) await call(this.lease, "LeaseRevoke", { ID: leaseId }).catch(() => {});
    }
    this.kv.close();
    this.lease.close();
    this.lock.close();
  }
}
