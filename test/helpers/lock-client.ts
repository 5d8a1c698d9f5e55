import assert from "node:assert/strict";
import { credentials, Metadata, status, type ChannelOptions, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import { bearerTokenInterceptor } from "../../src/client/bearer-token.ts";
import {
  LockServiceClient,
  type ForceReleaseResponse,
  type AcquireRequest,
  type AcquireResponse,
  type KeepAliveRequest,
  type KeepAliveResponse,
  type ListLocksResponse,
  type ReleaseResponse,
} from "../../src/gen/mcplockd/v1/lock.ts";

/** Promise wrappers over the generated grpc-js client, for tests. */
export class TestLockClient {
  readonly raw: LockServiceClient;

  /** `token`: sent as a bearer token on every call; `channelOptions`: grpc-js channel options. */
  constructor(address: string, options: { token?: string; channelOptions?: ChannelOptions } = {}) {
    const interceptors = options.token === undefined ? [] : [bearerTokenInterceptor(options.token)];
    this.raw = new LockServiceClient(address, credentials.createInsecure(), { ...options.channelOptions, interceptors });
  }

  forceRelease(resource: string, reason: string): Promise<ForceReleaseResponse> {
    return new Promise((resolve, reject) =>
      this.raw.forceRelease({ resource, reason }, (err, res) => (err ? reject(err) : resolve(res))),
    );
  }

  acquire(
    request: Partial<AcquireRequest> & { resource: string },
    options: { deadlineMs?: number; signal?: AbortSignal } = {},
  ): Promise<AcquireResponse> {
    const full: AcquireRequest = { holder: "", ttl: undefined, waitTimeout: undefined, metadata: {}, ...request };
    const callOptions = options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs };
    return new Promise((resolve, reject) => {
      const call = this.raw.acquire(full, new Metadata(), callOptions, (err, response) =>
        err ? reject(err) : resolve(response),
      );
      options.signal?.addEventListener("abort", () => call.cancel(), { once: true });
    });
  }

  release(leaseId: string): Promise<ReleaseResponse> {
    return new Promise((resolve, reject) => this.raw.release({ leaseId }, (err, res) => (err ? reject(err) : resolve(res))));
  }

  listLocks(resourcePrefix = ""): Promise<ListLocksResponse> {
    return new Promise((resolve, reject) =>
      this.raw.listLocks({ resourcePrefix }, (err, res) => (err ? reject(err) : resolve(res))),
    );
  }

  /** A KeepAlive stream with one-request-one-response helper. */
  keepAlive(): KeepAliveStream {
    return new KeepAliveStream(this.raw.keepAlive());
  }

  close(): void {
    this.raw.close();
  }
}

export class KeepAliveStream {
  /** Callers waiting for an answer, by lease id, oldest first. */
  private readonly pending = new Map<string, Array<(response: KeepAliveResponse) => void>>();
  readonly ended: Promise<ServiceError | undefined>;

  constructor(readonly call: ClientDuplexStream<KeepAliveRequest, KeepAliveResponse>) {
    call.on("data", (response: KeepAliveResponse) => {
      const waiting = this.pending.get(response.leaseId);
      waiting?.shift()?.(response);
      if (waiting?.length === 0) this.pending.delete(response.leaseId);
    });
    this.ended = new Promise((resolve) => {
      call.on("error", (err: ServiceError) => resolve(err));
      call.on("end", () => resolve(undefined));
    });
  }

  /**
   * Sends one renewal and resolves with its response: the next answer that
   * names this lease id (the service answers each lease as soon as it can,
   * so answers for different leases may come in another order).
   */
  renew(leaseId: string): Promise<KeepAliveResponse> {
    return new Promise((resolve) => {
      const waiting = this.pending.get(leaseId);
      if (waiting) waiting.push(resolve);
      else this.pending.set(leaseId, [resolve]);
      this.call.write({ leaseId });
    });
  }

  end(): void {
    this.call.end();
  }
}

/** Seconds+nanos → ms. */
export function ms(value: { seconds: number; nanos: number } | undefined): number {
  return value === undefined ? NaN : value.seconds * 1000 + value.nanos / 1e6;
}

export function isServiceError(err: unknown): err is ServiceError {
  return typeof err === "object" && err !== null && "code" in err && "details" in err;
}

/**
 * Asserts that `promise` rejects with gRPC status `code` and details matching
 * every pattern (a string must be contained, a RegExp must match); resolves to
 * the details. `label` prefixes every failure message.
 */
export async function expectGrpcError(
  promise: Promise<unknown>,
  code: status,
  patterns: Array<RegExp | string> = [],
  label?: string,
): Promise<string> {
  const prefix = label === undefined ? "" : `${label}: `;
  let details = "";
  await assert.rejects(
    promise,
    (err: unknown) => {
      assert.ok(isServiceError(err), `${prefix}expected a gRPC error, got ${String(err)}`);
      assert.equal(err.code, code, `${prefix}expected status ${status[code]}, got ${status[err.code]}: ${err.details}`);
      for (const pattern of patterns) {
        const ok = typeof pattern === "string" ? err.details.includes(pattern) : pattern.test(err.details);
        assert.ok(ok, `${prefix}details ${JSON.stringify(err.details.slice(0, 300))} should match ${String(pattern)}`);
      }
      details = err.details;
      return true;
    },
    `${prefix}expected the call to fail with ${status[code]}`,
  );
  return details;
}
