import { performance } from "node:perf_hooks";
import {
  Channel,
  credentials as grpcCredentials,
  Metadata,
  status,
  type CallOptions,
  type ChannelCredentials,
  type ClientDuplexStream,
  type ClientUnaryCall,
  type ServiceError,
} from "@grpc/grpc-js";
import {
  CompactionRequest,
  DeleteRangeRequest,
  KVClient,
  LeaseClient,
  LeaseGrantRequest,
  LeaseKeepAliveRequest,
  LeaseRevokeRequest,
  LeaseTimeToLiveRequest,
  MaintenanceClient,
  PutRequest,
  RangeRequest,
  StatusRequest,
  TxnRequest,
  TxnResponse,
  WatchClient,
  WatchCreateRequest,
  type CompactionResponse,
  type DeleteRangeResponse,
  type LeaseGrantResponse,
  type LeaseKeepAliveResponse,
  type LeaseRevokeResponse,
  type LeaseTimeToLiveResponse,
  type PutResponse,
  type RangeResponse,
  type StatusResponse,
  type WatchRequest,
  type WatchResponse,
} from "../../gen/etcd/etcdserverpb/rpc.ts";
import { isUnavailable, ServiceEndpoints, type Endpoint } from "../../grpc/service-endpoints.ts";
import { LeanUnary } from "./lean-unary.ts";

// A thin client of etcd's own gRPC API (v3), over grpc-js and the static
// stubs in src/gen/etcd: several endpoints with failover, TLS, keepalive
// pings etcd accepts, every call abortable, Watch and LeaseKeepAlive as async
// generators. It knows nothing about locks: the etcd store builds on it.

/** TLS to etcd: PEM contents (not paths: nothing here reads files). */
export interface EtcdTls {
  /** CA certificates to trust; default: the system's. */
  ca?: Buffer;
  /** Client certificate and its key, for etcd's --client-cert-auth. */
  cert?: Buffer;
  key?: Buffer;
}

export interface EtcdClientOptions {
  /** http://HOST:PORT, https://HOST:PORT or HOST:PORT, one per member. */
  endpoints: readonly string[];
  tls?: EtcdTls;
}

export interface CallControl {
  /** Aborting cancels the call; it then rejects with signal.reason. */
  signal?: AbortSignal;
  /** ms; default 10 s for unary calls, none for streams. */
  timeoutMs?: number;
}

/** A bad endpoint list or TLS setting; the message names the entry. */
export class EtcdConfigError extends Error {
  override name = "EtcdConfigError";
}

/** etcd cancelled a watch: its start revision was compacted (compactRevision > 0), or another reason. */
export class EtcdWatchCanceledError extends Error {
  override name = "EtcdWatchCanceledError";
  constructor(
    message: string,
    /** The oldest revision still available when the start revision was compacted; 0 otherwise. */
    readonly compactRevision: bigint,
  ) {
    super(message);
  }
}

const UNARY_TIMEOUT_MS = 10_000;

// HTTP/2 pings find a member that vanished without closing the connection.
// etcd answers pings more often than every 5 s (--grpc-keepalive-min-time)
// with GOAWAY "too_many_pings", and pings without an open stream likewise
// (grpc-js does not send those by default).
const CHANNEL_OPTIONS = {
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1_000,
  // Messages up to etcd's own limit (--max-request-bytes is 1.5 MiB; ranges may answer more).
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
};

// etcd's clientv3 sends this on streams so that a member cut off from the
// leader ends them (UNAVAILABLE "no leader") instead of serving them stale.
const REQUIRE_LEADER_KEY = "hasleader";

/** The stubs of one member, sharing one connection, and the lean path for the hot call (Txn) on a second one. */
interface MemberStubs {
  kv: KVClient;
  watch: WatchClient;
  lease: LeaseClient;
  maintenance: MaintenanceClient;
  lean: LeanUnary;
  close(): void;
}

export class EtcdClient {
  readonly endpoints: readonly string[];
  readonly #members: ServiceEndpoints<MemberStubs>;
  #closed = false;

  constructor(options: EtcdClientOptions) {
    const { addresses, secure } = parseEndpoints(options.endpoints, options.tls);
    this.endpoints = options.endpoints;
    const credentials: ChannelCredentials = secure
      ? grpcCredentials.createSsl(options.tls?.ca ?? null, options.tls?.key ?? null, options.tls?.cert ?? null)
      : grpcCredentials.createInsecure();
    this.#members = new ServiceEndpoints(addresses, (address) => {
      const channel = new Channel(address, credentials, CHANNEL_OPTIONS);
      const shared = { channelOverride: channel };
      const lean = new LeanUnary(address, secure, options.tls);
      return {
        kv: new KVClient(address, credentials, shared),
        watch: new WatchClient(address, credentials, shared),
        lease: new LeaseClient(address, credentials, shared),
        maintenance: new MaintenanceClient(address, credentials, shared),
        lean,
        close: () => {
          channel.close();
          lean.close();
        },
      };
    });
  }

  /** The member calls go to now ("host:port"). */
  get currentEndpoint(): string {
    return this.#members.current().address;
  }

  // ---- KV ----

  range(request: Partial<RangeRequest>, control?: CallControl): Promise<RangeResponse> {
    return this.#unary(true, control, (m, md, o, cb) => m.kv.range(RangeRequest.fromPartial(request), md, o, cb));
  }

  put(request: Partial<PutRequest>, control?: CallControl): Promise<PutResponse> {
    return this.#unary(false, control, (m, md, o, cb) => m.kv.put(PutRequest.fromPartial(request), md, o, cb));
  }

  deleteRange(request: Partial<DeleteRangeRequest>, control?: CallControl): Promise<DeleteRangeResponse> {
    return this.#unary(false, control, (m, md, o, cb) => m.kv.deleteRange(DeleteRangeRequest.fromPartial(request), md, o, cb));
  }

  /**
   * A transaction is retried on another member only if it cannot have reached
   * one (it may have been applied). The store's hot call: sent on the lean
   * path (lean-unary.ts), not through grpc-js.
   */
  txn(request: TxnRequest, control?: CallControl): Promise<TxnResponse> {
    const encoded = TxnRequest.encode(TxnRequest.fromPartial(request)).finish();
    return this.#onMember(false, control, async (member) =>
      TxnResponse.decode(await member.lean.call("/etcdserverpb.KV/Txn", encoded, control?.timeoutMs ?? UNARY_TIMEOUT_MS, control?.signal)),
    );
  }

  compact(request: Partial<CompactionRequest>, control?: CallControl): Promise<CompactionResponse> {
    return this.#unary(false, control, (m, md, o, cb) => m.kv.compact(CompactionRequest.fromPartial(request), md, o, cb));
  }

  // ---- Lease ----

  /** `ttlSeconds` is whole seconds; etcd raises it to its minimum (1.5 × the election timeout). */
  leaseGrant(ttlSeconds: number, control?: CallControl): Promise<LeaseGrantResponse> {
    const request = LeaseGrantRequest.fromPartial({ TTL: BigInt(ttlSeconds) });
    return this.#unary(false, control, (m, md, o, cb) => m.lease.leaseGrant(request, md, o, cb));
  }

  leaseRevoke(id: bigint, control?: CallControl): Promise<LeaseRevokeResponse> {
    // Idempotent: revoking a revoked lease answers NOT_FOUND.
    return this.#unary(true, control, (m, md, o, cb) => m.lease.leaseRevoke(LeaseRevokeRequest.fromPartial({ ID: id }), md, o, cb));
  }

  leaseTimeToLive(id: bigint, control?: CallControl & { keys?: boolean }): Promise<LeaseTimeToLiveResponse> {
    const request = LeaseTimeToLiveRequest.fromPartial({ ID: id, keys: control?.keys ?? false });
    return this.#unary(true, control, (m, md, o, cb) => m.lease.leaseTimeToLive(request, md, o, cb));
  }

  /**
   * One LeaseKeepAlive stream: each lease id from `ids` is sent as a
   * renewal, and each answer is yielded (TTL ≤ 0: the lease is gone). When
   * the stream breaks, or (with `answerTimeoutMs`) a renewal stays
   * unanswered that long (a member that froze ends no stream), it is
   * reopened on the next member at once; renewals sent on the old stream may
   * go unanswered: send them again. After every member failed in a row it
   * throws. Ends when `ids` ends (after the answers still due) or `signal`
   * aborts.
   */
  async *leaseKeepAlive(
    ids: AsyncIterable<bigint>,
    control: { signal?: AbortSignal; answerTimeoutMs?: number } = {},
  ): AsyncGenerator<LeaseKeepAliveResponse> {
    const { signal, answerTimeoutMs } = control;
    let current: { stream: ClientDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>; sentAt: number[]; stalled: () => void } | undefined;
    let inputDone = false;
    let finished = false;
    const pump = (async () => {
      for await (const id of ids) {
        if (finished || signal?.aborted) break;
        if (!current) continue;
        // etcd answers a stream's renewals in order: the oldest unanswered is first.
        current.sentAt.push(performance.now());
        current.stream.write(LeaseKeepAliveRequest.fromPartial({ ID: id }));
      }
      inputDone = true;
      current?.stream.end();
    })();
    pump.catch(() => {});
    try {
      yield* this.#resilientStream(
        signal,
        (member, stalled) => {
          const stream = member.stub.lease.leaseKeepAlive(requireLeader());
          const opened = { stream, sentAt: [] as number[], stalled };
          current = opened;
          if (inputDone) stream.end();
          if (answerTimeoutMs === undefined) return { stream };
          const check = setInterval(() => {
            const oldest = opened.sentAt[0];
            if (oldest !== undefined && performance.now() - oldest > answerTimeoutMs) stalled();
          }, Math.max(10, answerTimeoutMs / 4));
          return { stream, stop: () => clearInterval(check) };
        },
        (response) => {
          current?.sentAt.shift();
          return response;
        },
      );
    } finally {
      finished = true;
    }
  }

  // ---- Watch ----

  /**
   * Watches `request.key` (and `rangeEnd`) from `request.startRevision`,
   * yielding every response (the first one has `created` set). When the
   * stream breaks, or (with `checkEveryMs`) a progress request sent that
   * often gets no answer within `checkEveryMs` (a member that froze ends no
   * stream), the watch is reopened on the next member from the revision
   * after the last one seen, so no event is lost or repeated. A watch etcd
   * cancels (its start revision was compacted) throws EtcdWatchCanceledError:
   * list again, then watch from the listing's revision + 1. Ends when
   * `signal` aborts.
   */
  async *watch(
    request: Partial<WatchCreateRequest>,
    control: { signal?: AbortSignal; checkEveryMs?: number } = {},
  ): AsyncGenerator<WatchResponse> {
    const { checkEveryMs } = control;
    let nextRevision = request.startRevision ?? 0n;
    let lastHeard = 0;
    yield* this.#resilientStream(
      control.signal,
      (member, stalled) => {
        const stream: ClientDuplexStream<WatchRequest, WatchResponse> = member.stub.watch.watch(requireLeader());
        stream.write({ createRequest: WatchCreateRequest.fromPartial({ ...request, startRevision: nextRevision }) });
        lastHeard = performance.now();
        if (checkEveryMs === undefined) return { stream };
        // etcd answers a progress request with the revision the watch has reached (3.4+).
        const check = setInterval(() => {
          if (performance.now() - lastHeard > 2 * checkEveryMs) return stalled();
          stream.write({ progressRequest: {} });
        }, checkEveryMs);
        return { stream, stop: () => clearInterval(check) };
      },
      (response) => {
        lastHeard = performance.now();
        if (response.canceled) {
          throw new EtcdWatchCanceledError(
            `etcd cancelled the watch${response.compactRevision > 0n ? `: revision ${nextRevision} was compacted (the oldest left is ${response.compactRevision})` : ""}` +
              `${response.cancelReason ? `: ${response.cancelReason}` : ""}`,
            response.compactRevision,
          );
        }
        if (response.events.length > 0) {
          for (const event of response.events) {
            const revision = event.kv?.modRevision ?? 0n;
            if (revision >= nextRevision) nextRevision = revision + 1n;
          }
        } else if (!response.created || nextRevision === 0n) {
          // A progress notification, or the creation of a watch "from now": nothing at or before this revision is still to come.
          const after = (response.header?.revision ?? 0n) + 1n;
          if (after > nextRevision) nextRevision = after;
        }
        return response;
      },
    );
  }

  // ---- Maintenance ----

  /** The status of the member calls go to now (its id is `header.memberId`; `leader` names the leader). */
  status(control?: CallControl): Promise<StatusResponse> {
    return this.#unary(true, control, (m, md, o, cb) => m.maintenance.status(StatusRequest.fromPartial({}), md, o, cb));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#members.close();
  }

  /**
   * A unary call on the current member, failing over on UNAVAILABLE: any
   * such failure when `idempotent`, else only when the request cannot have
   * reached a member (no connection was made).
   */
  #unary<T>(
    idempotent: boolean,
    control: CallControl | undefined,
    invoke: (member: MemberStubs, metadata: Metadata, options: Partial<CallOptions>, callback: (err: ServiceError | null, res: T) => void) => ClientUnaryCall,
  ): Promise<T> {
    return this.#onMember(idempotent, control, (member) => unaryOn<T>((md, o, cb) => invoke(member, md, o, cb), control));
  }

  /** `call` on the current member, failing over as #unary says; either path (grpc-js or lean) goes through here. */
  #onMember<T>(idempotent: boolean, control: CallControl | undefined, call: (member: MemberStubs) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new Error("the etcd client is closed"));
    if (control?.signal?.aborted) return Promise.reject(control.signal.reason);
    return this.#members.withFailover(
      (member) =>
        call(member.stub).catch((err: unknown): never => {
          // A member that froze answers nothing: the next call goes elsewhere (this one's time is spent).
          if ((err as Partial<ServiceError>).code === status.DEADLINE_EXCEEDED) this.#members.failed(member);
          throw err;
        }),
      (err) => idempotent || notSent(err),
    );
  }

  /**
   * Runs a stream on the current member and yields what `accept` makes of
   * each message; reopens it on the next member when it breaks or `open`'s
   * watchdog calls `stalled`, until every member failed in a row without a
   * message.
   */
  async *#resilientStream<Req, Res, Out>(
    signal: AbortSignal | undefined,
    open: (member: Endpoint<MemberStubs>, stalled: () => void) => { stream: ClientDuplexStream<Req, Res>; stop?: () => void },
    accept: (message: Res) => Out,
  ): AsyncGenerator<Out> {
    let failuresInRow = 0;
    for (;;) {
      if (this.#closed) throw new Error("the etcd client is closed");
      signal?.throwIfAborted();
      const member = this.#members.current();
      let stalled = false;
      const { stream, stop } = open(member, () => {
        stalled = true;
        stream.cancel();
      });
      const cancel = () => stream.cancel();
      signal?.addEventListener("abort", cancel, { once: true });
      try {
        for await (const message of stream as AsyncIterable<Res>) {
          failuresInRow = 0;
          yield accept(message);
        }
        return; // the server ended the stream after our half-close
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (!stalled && !isUnavailable(err)) throw err;
        this.#members.failed(member);
        failuresInRow += 1;
        if (failuresInRow >= this.#members.size) throw stalled ? new Error(`no answer from etcd at ${member.address}`) : err;
      } finally {
        stop?.();
        signal?.removeEventListener("abort", cancel);
        stream.cancel();
      }
    }
  }
}

function requireLeader(): Metadata {
  const metadata = new Metadata();
  metadata.set(REQUIRE_LEADER_KEY, "true");
  return metadata;
}

/** One unary call with a deadline, abortable. */
function unaryOn<T>(
  invoke: (metadata: Metadata, options: Partial<CallOptions>, callback: (err: ServiceError | null, res: T) => void) => ClientUnaryCall,
  control: CallControl | undefined,
): Promise<T> {
  const signal = control?.signal;
  return new Promise<T>((resolve, reject) => {
    const call = invoke(new Metadata(), { deadline: Date.now() + (control?.timeoutMs ?? UNARY_TIMEOUT_MS) }, (err, res) => {
      signal?.removeEventListener("abort", cancel);
      if (signal?.aborted) return reject(signal.reason);
      if (err) return reject(err);
      resolve(res);
    });
    const cancel = () => call.cancel();
    signal?.addEventListener("abort", cancel, { once: true });
  });
}

/** UNAVAILABLE before any byte of the request left: nothing can have been applied. */
function notSent(err: ServiceError): boolean {
  return err.code === status.UNAVAILABLE && /No connection established|ECONNREFUSED|connect ECONN|Failed to connect|Name resolution failed/i.test(err.details);
}

/**
 * host:port of each endpoint, and whether to use TLS: https:// asks for it,
 * http:// refuses it, a bare HOST:PORT follows the TLS options.
 */
export function parseEndpoints(endpoints: readonly string[], tls: EtcdTls | undefined): { addresses: string[]; secure: boolean } {
  if (endpoints.length === 0) throw new EtcdConfigError("no etcd endpoint given");
  const hasTls = tls !== undefined && (tls.ca !== undefined || tls.cert !== undefined || tls.key !== undefined);
  if ((tls?.cert === undefined) !== (tls?.key === undefined)) {
    throw new EtcdConfigError("a client certificate needs its key, and a key its certificate");
  }
  const schemes = new Set<string>();
  const addresses = endpoints.map((endpoint) => {
    const match = /^(?:(https?):\/\/)?((?:\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]+):\d{1,5})\/?$/.exec(endpoint.trim());
    if (!match) throw new EtcdConfigError(`etcd endpoint ${JSON.stringify(endpoint)}: expected http://HOST:PORT, https://HOST:PORT or HOST:PORT`);
    schemes.add(match[1] ?? (hasTls ? "https" : "http"));
    return match[2]!;
  });
  if (schemes.size > 1) throw new EtcdConfigError("etcd endpoints mix http:// and https://: use one scheme for every member");
  const secure = schemes.has("https");
  if (!secure && hasTls) throw new EtcdConfigError("TLS options given with http:// etcd endpoints: use https://");
  if (new Set(addresses).size !== addresses.length) throw new EtcdConfigError("an etcd endpoint is listed twice");
  return { addresses, secure };
}
