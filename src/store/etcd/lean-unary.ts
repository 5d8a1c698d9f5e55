import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type SecureClientSessionOptions } from "node:http2";
import { status } from "@grpc/grpc-js";
import type { EtcdTls } from "./etcd-client.ts";

// The etcd store's hot call (Txn: every grant, renewal and release) as a
// plain gRPC unary call over node:http2, without grpc-js's per-call machinery
// (call stacks, filters, interceptors, channelz). On this project's 2-core
// machine a Range cost the caller 150–260 µs of CPU this way against
// 480–830 µs through grpc-js (docs/etcd.md, "The hot call"), and every
// replica spends most of its CPU in calls. Failover, deadlines and aborts
// stay the client's (EtcdClient); errors have grpc-js's shape (`code`,
// `details`), so the same rules apply to both paths.

/** A failed call, shaped like grpc-js's ServiceError. */
export interface LeanCallError extends Error {
  code: number;
  details: string;
}

/** One member's connection for lean unary calls, opened on first use and again after it closed. */
export class LeanUnary {
  #session: ClientHttp2Session | undefined;
  #closed = false;

  constructor(
    private readonly address: string,
    private readonly secure: boolean,
    private readonly tls: EtcdTls | undefined,
  ) {}

  /**
   * Sends `request` (an encoded message) to `path` ("/package.Service/Method")
   * and resolves with the encoded answer. Rejects with a LeanCallError:
   * UNAVAILABLE when the connection failed (with "No connection established"
   * when nothing was sent), DEADLINE_EXCEEDED after `timeoutMs`, etcd's own
   * status otherwise; with `signal.reason` when aborted.
   */
  call(path: string, request: Uint8Array, timeoutMs: number, signal?: AbortSignal): Promise<Buffer> {
    if (this.#closed) return Promise.reject(callError(status.UNAVAILABLE, "No connection established: the etcd client is closed"));
    const session = this.#open();
    return new Promise<Buffer>((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = session.request({
          ":method": "POST",
          ":path": path,
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-timeout": `${Math.max(1, Math.ceil(timeoutMs))}m`,
        });
      } catch (err) {
        this.#drop(session);
        reject(callError(status.UNAVAILABLE, `No connection established: ${(err as Error).message}`));
        return;
      }
      const chunks: Buffer[] = [];
      let headers: IncomingHttpHeaders | undefined;
      let trailers: IncomingHttpHeaders | undefined;
      let settled = false;
      holdOpen(session, +1);
      const finish = (err: Error | undefined, answer?: Buffer) => {
        if (settled) return;
        settled = true;
        holdOpen(session, -1);
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (err) {
          if (!stream.closed) stream.close(constants.NGHTTP2_CANCEL);
          reject(err);
        } else resolve(answer!);
      };
      const timer = setTimeout(() => finish(callError(status.DEADLINE_EXCEEDED, `no answer from etcd at ${this.address} within ${timeoutMs} ms`)), timeoutMs);
      const onAbort = () => finish(signal!.reason as Error);
      signal?.addEventListener("abort", onAbort, { once: true });
      stream.on("response", (received) => (headers = received));
      stream.on("trailers", (received) => (trailers = received));
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", (err: Error) => finish(this.#unavailable(session, err.message)));
      stream.on("close", () => {
        if (settled) return;
        // Trailers-only answers (errors) carry the status in the headers.
        const final = trailers ?? headers;
        const httpStatus = headers?.[":status"] as number | undefined;
        if (final?.["grpc-status"] === undefined) {
          finish(this.#unavailable(session, httpStatus !== undefined && httpStatus !== 200 ? `HTTP status ${httpStatus}` : "the stream ended without a status"));
          return;
        }
        const code = Number(final["grpc-status"]);
        if (code !== status.OK) {
          finish(callError(code, decodeMessage(final["grpc-message"])));
          return;
        }
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        // One length-prefixed message: a compression flag (never set: we ask for none) and a 4-byte length.
        if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) {
          finish(callError(status.INTERNAL, `etcd at ${this.address}: an answer that is not one uncompressed gRPC message`));
          return;
        }
        finish(undefined, body.subarray(5));
      });
      stream.end(frame(request));
    });
  }

  close(): void {
    this.#closed = true;
    this.#session?.close();
    this.#session = undefined;
  }

  #open(): ClientHttp2Session {
    const current = this.#session;
    if (current && !current.closed && !current.destroyed) return current;
    const options: SecureClientSessionOptions = this.secure ? { ca: this.tls?.ca, cert: this.tls?.cert, key: this.tls?.key, ALPNProtocols: ["h2"] } : {};
    const session = connect(`${this.secure ? "https" : "http"}://${this.address}`, options);
    // Errors reach the calls on the session's streams; a session that failed or was told to go away is not reused.
    session.once("connect", () => connected.add(session));
    session.on("error", () => this.#drop(session));
    // Told to go away (a member shutting down): new calls get a new connection, those in flight finish.
    session.on("goaway", () => {
      if (this.#session === session) this.#session = undefined;
      if (!session.closed) session.close();
    });
    session.on("close", () => this.#drop(session));
    // Without a call in flight the connection does not keep the process alive.
    session.unref();
    this.#session = session;
    return session;
  }

  /** A connection that never came up cannot have carried the request: say so, so that the call may go to another member. */
  #unavailable(session: ClientHttp2Session, why: string): LeanCallError {
    const sent = connected.has(session);
    return callError(status.UNAVAILABLE, `${sent ? "" : "No connection established: "}etcd at ${this.address}: ${why}`);
  }

  #drop(session: ClientHttp2Session): void {
    if (this.#session === session) this.#session = undefined;
    if (!session.destroyed) session.destroy();
  }
}

/** Sessions whose connection came up (a request on them may have reached etcd). */
const connected = new WeakSet<ClientHttp2Session>();
/** Calls waiting for their answer, per session: only they keep the process alive. */
const callsOn = new WeakMap<ClientHttp2Session, number>();

function holdOpen(session: ClientHttp2Session, change: 1 | -1): void {
  const calls = (callsOn.get(session) ?? 0) + change;
  callsOn.set(session, calls);
  if (calls === 1 && change === 1) session.ref();
  else if (calls === 0 && !session.destroyed) session.unref();
}

function frame(message: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(5 + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, 5);
  return framed;
}

function callError(code: number, details: string): LeanCallError {
  const err = new Error(`${code} ${status[code] ?? "UNKNOWN"}: ${details}`) as LeanCallError;
  err.code = code;
  err.details = details;
  return err;
}

/** grpc-message is percent-encoded (gRPC over HTTP/2). */
function decodeMessage(value: string | string[] | undefined): string {
  const text = Array.isArray(value) ? value.join(",") : (value ?? "");
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
