import { status, type ServiceError } from "@grpc/grpc-js";

/** One address of the service and its stub (a grpc-js channel of its own). */
export interface Endpoint<Stub> {
  readonly address: string;
  readonly stub: Stub;
}

/**
 * The replicas (or cluster members) a client may use, in the order given, and
 * the one it uses now. Every call goes to the current one; when a call finds
 * it unavailable the client moves on to the next (wrapping around), like
 * etcd's and Consul's clients. Stubs are made on first use and kept: grpc-js
 * reconnects an idle channel on its next call, so a replica that comes back
 * is usable again. Used by LockClient (src/client) and the etcd store's
 * client (src/store/etcd).
 */
export class ServiceEndpoints<Stub extends { close(): void }> {
  readonly #endpoints: (Endpoint<Stub> | undefined)[];
  #current = 0;

  constructor(
    readonly addresses: readonly string[],
    private readonly makeStub: (address: string) => Stub,
  ) {
    if (addresses.length === 0) throw new Error("ServiceEndpoints: no address");
    this.#endpoints = addresses.map(() => undefined);
  }

  get size(): number {
    return this.addresses.length;
  }

  current(): Endpoint<Stub> {
    const index = this.#current;
    return (this.#endpoints[index] ??= { address: this.addresses[index]!, stub: this.makeStub(this.addresses[index]!) });
  }

  /**
   * A call through `endpoint` found its replica unavailable: later calls go
   * to the next address. Several calls failing on one replica move on once.
   */
  failed(endpoint: Endpoint<Stub>): void {
    if (this.#endpoints[this.#current] === endpoint) this.#current = (this.#current + 1) % this.size;
  }

  /**
   * Runs `call` on the current replica, and on the next ones while it fails
   * with UNAVAILABLE (the replica is down, starting, shutting down, or its
   * store is unusable): each address is tried once. Other errors, and the
   * last UNAVAILABLE, are thrown as they are. `retry` narrows which
   * UNAVAILABLEs are tried again elsewhere (a call that may have been applied
   * must not be); the replica counts as failed either way.
   */
  async withFailover<T>(
    call: (endpoint: Endpoint<Stub>, attempt: number) => Promise<T>,
    retry: (err: ServiceError) => boolean = () => true,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const endpoint = this.current();
      try {
        return await call(endpoint, attempt);
      } catch (err) {
        if (!isUnavailable(err)) throw err;
        this.failed(endpoint);
        if (!retry(err) || attempt + 1 >= this.size) throw err;
      }
    }
  }

  close(): void {
    for (const endpoint of this.#endpoints) endpoint?.stub.close();
  }
}

export function isUnavailable(err: unknown): err is ServiceError {
  return err instanceof Error && (err as Partial<ServiceError>).code === status.UNAVAILABLE;
}
