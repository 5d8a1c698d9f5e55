import { credentials, Metadata, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import { Agent, get } from "node:http";
import {
  LockServiceClient,
  type AcquireRequest,
  type KeepAliveRequest,
  type KeepAliveResponse,
} from "../../../src/gen/mcplockd/v1/lock.ts";
import { sharedNow } from "../clock.ts";
import type { Target } from "../protocol.ts";
import type { Listing, LockClient, LockDriver, Release, RenewalListener, RenewalStream } from "./driver.ts";

/** Lease ttl of W1 to W4: far longer than any of them runs, so nothing needs renewing. */
const CYCLE_TTL = { seconds: 60, nanos: 0 };
const WAIT = { seconds: 60, nanos: 0 };

/**
 * mcp-lockd through its own generated grpc-js client; GET /health/locks for
 * listings. Each client gets its own HTTP/2 connection: grpc-js otherwise
 * shares one among all clients of a process with the same address and options.
 */
export class McpLockdDriver implements LockDriver {
  constructor(private readonly target: Target) {
    if (!target.grpcAddress || !target.httpAddress) throw new Error("mcp-lockd target needs grpc and http addresses");
  }

  async openClient(): Promise<LockClient> {
    const raw = new LockServiceClient(this.target.grpcAddress!, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
    await new Promise<void>((resolve, reject) =>
      raw.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())),
    );
    return new McpLockdClient(raw, this.target.httpAddress!);
  }
}

class McpLockdClient implements LockClient {
  private readonly holder = `bench-${process.pid}`;
  /** One kept-alive HTTP connection, as a monitoring client would use. */
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });

  constructor(
    private readonly raw: InstanceType<typeof LockServiceClient>,
    private readonly httpAddress: string,
  ) {}

  private acquire(resource: string, ttl: AcquireRequest["ttl"], wait: boolean): Promise<string> {
    const request: AcquireRequest = { resource, holder: this.holder, ttl, waitTimeout: wait ? WAIT : undefined, metadata: {} };
    return new Promise((resolve, reject) =>
      this.raw.acquire(request, new Metadata(), {}, (err: ServiceError | null, response) => {
        if (err) reject(err);
        else if (!response.lease) reject(new Error(`Acquire of ${resource} answered without a lease`));
        else resolve(response.lease.leaseId);
      }),
    );
  }

  private release(leaseId: string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.raw.release({ leaseId }, (err: ServiceError | null, response) => {
        if (err) reject(err);
        else if (!response.released) reject(new Error("Release answered released=false"));
        else resolve();
      }),
    );
  }

  async acquireRelease(resource: string): Promise<void> {
    // Try-once Acquire (no wait_timeout): how an uncontended caller asks.
    await this.release(await this.acquire(resource, CYCLE_TTL, false));
  }

  async acquireWaiting(resource: string): Promise<Release> {
    const leaseId = await this.acquire(resource, CYCLE_TTL, true);
    return () => this.release(leaseId);
  }

  /** Every Acquire already creates a fresh lease: the lifecycle is the plain cycle. */
  lifecycle(resource: string): Promise<void> {
    return this.acquireRelease(resource);
  }

  hold(resource: string, ttlSeconds: number): Promise<string> {
    return this.acquire(resource, { seconds: ttlSeconds, nanos: 0 }, false);
  }

  openRenewalStream(listener: RenewalListener): RenewalStream {
    const call: ClientDuplexStream<KeepAliveRequest, KeepAliveResponse> = this.raw.keepAlive();
    let closed = false;
    const finish = (error: Error | undefined) => {
      if (closed) return;
      closed = true;
      listener.onClosed(error);
    };
    call.on("data", (response: KeepAliveResponse) => listener.onAnswer(response.leaseId, !response.expired));
    call.on("error", (err: ServiceError) => finish(err));
    call.on("end", () => finish(undefined));
    return {
      renew: (leaseKey) => void call.write({ leaseId: leaseKey }),
      close: () => {
        closed = true;
        call.end();
      },
    };
  }

  list(prefix: string): Promise<Listing> {
    const started = sharedNow();
    return new Promise((resolve, reject) => {
      const request = get(`http://${this.httpAddress}/health/locks`, { agent: this.agent }, (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("error", reject);
        response.on("end", () => {
          const elapsedMs = sharedNow() - started;
          if (response.statusCode !== 200) {
            reject(new Error(`GET /health/locks answered ${response.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 300)}`));
            return;
          }
          const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { locks: Array<{ resource: string }> };
          resolve({ entries: body.locks.filter((lock) => lock.resource.startsWith(prefix)).length, elapsedMs });
        });
      });
      request.on("error", reject);
    });
  }

  async close(): Promise<void> {
    this.agent.destroy();
    this.raw.close();
  }
}
