import type {
  handleBidiStreamingCall,
  handleUnaryCall,
  ServerDuplexStream,
  ServerUnaryCall,
} from "@grpc/grpc-js";
import { presentedCredentials, type PresentedCredentials } from "../auth/access-policy.ts";
import { WaitCancelledError, WaitDeadlineError, type LockError } from "../core/errors.ts";
import { toServiceError } from "./status-map.ts";
import { UndecodableRequest } from "./undecodable-request.ts";

// Turns grpc-js's callback and event-emitter handlers into plain async
// functions and async iterables with an AbortSignal (the nice-grpc style), so
// the service code never touches call objects.

export interface CallContext {
  /** Aborts when the client cancels or disconnects, the deadline passes, or the server shuts down. */
  signal: AbortSignal;
  /** The bearer token and the verified client certificate's common name, when the call has them. */
  presented: PresentedCredentials;
  /** The client's address and port: one connection. */
  peer: string;
}

export type UnaryHandler<Req, Res> = (request: Req, context: CallContext) => Promise<Res>;
export type BidiHandler<Req, Res> = (requests: AsyncIterable<Req>, context: CallContext) => AsyncIterable<Res>;

/** Refuses calls (with its status) while it returns one; see ReadinessGate. */
export interface CallGate {
  refusal(): LockError | undefined;
}

export function unary<Req, Res>(handler: UnaryHandler<Req, Res>, shutdown: AbortSignal, gate?: CallGate): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const refused = gate?.refusal();
    if (refused) return callback(toServiceError(refused));
    if (call.request instanceof UndecodableRequest) return callback(toServiceError(call.request.error()));
    const context = contextOf(call, shutdown);
    handler(call.request, context.context).then(
      (response) => callback(null, response),
      (err: unknown) => callback(toServiceError(err)),
    ).finally(context.dispose);
  };
}

export function bidi<Req, Res>(handler: BidiHandler<Req, Res>, shutdown: AbortSignal, gate?: CallGate): handleBidiStreamingCall<Req, Res> {
  return (call) => {
    const refused = gate?.refusal();
    if (refused) return void call.emit("error", toServiceError(refused));
    const context = contextOf(call, shutdown);
    void pipeResponses(call, handler(untilAborted(call, context.context.signal), context.context))
      .then(
        () => call.end(),
        (err: unknown) => {
          if (!context.context.signal.aborted) call.emit("error", toServiceError(err));
        },
      )
      .finally(context.dispose);
  };
}

async function pipeResponses<Req, Res>(call: ServerDuplexStream<Req, Res>, responses: AsyncIterable<Res>): Promise<void> {
  for await (const response of responses) {
    if (call.cancelled || call.destroyed) return;
    if (!call.write(response)) await new Promise((resolve) => call.once("drain", resolve));
  }
}

/**
 * The request stream as an async iterable that ends when the client half-closes
 * or the call is aborted. Not Readable's own iterator: that destroys the
 * stream when iteration ends, and then the final status never reaches the
 * client. Pauses the stream while requests queue up (backpressure).
 */
async function* untilAborted<Req>(call: ServerDuplexStream<Req, unknown>, signal: AbortSignal): AsyncIterable<Req> {
  const queued: Req[] = [];
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const onData = (request: Req) => {
    if (request instanceof UndecodableRequest) {
      failure ??= request.error();
      call.pause();
      return notify();
    }
    queued.push(request);
    if (queued.length >= 64) call.pause();
    notify();
  };
  const onEnd = () => {
    ended = true;
    notify();
  };
  const onError = (err: Error) => {
    failure = err;
    notify();
  };
  call.on("data", onData);
  call.on("end", onEnd);
  call.on("error", onError);
  signal.addEventListener("abort", notify);
  try {
    for (;;) {
      if (signal.aborted) return;
      const next = queued.shift();
      if (next !== undefined) {
        if (queued.length < 16 && call.isPaused()) call.resume();
        yield next;
        continue;
      }
      // A stream torn down by the client is an end, not a failure.
      if (failure) {
        if (call.cancelled) return;
        throw failure;
      }
      if (ended) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    call.off("data", onData);
    call.off("end", onEnd);
    call.off("error", onError);
    signal.removeEventListener("abort", notify);
  }
}

function contextOf(call: ServerUnaryCall<unknown, unknown> | ServerDuplexStream<unknown, unknown>, shutdown: AbortSignal): { context: CallContext; dispose: () => void } {
  const controller = new AbortController();
  const abort = (reason: Error) => {
    if (!controller.signal.aborted) controller.abort(reason);
  };
  const onCancelled = () => abort(new WaitCancelledError());
  const onShutdown = () => abort(shutdown.reason as Error);
  call.on("cancelled", onCancelled);
  shutdown.addEventListener("abort", onShutdown, { once: true });
  if (shutdown.aborted) onShutdown();
  let deadlineTimer: NodeJS.Timeout | undefined;
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  if (Number.isFinite(deadlineMs)) {
    deadlineTimer = setTimeout(() => abort(new WaitDeadlineError()), Math.max(0, deadlineMs - Date.now()));
  }
  // Safe to run twice: removing listeners and clearing timers are idempotent.
  const dispose = () => {
    clearTimeout(deadlineTimer);
    call.removeListener("cancelled", onCancelled);
    shutdown.removeEventListener("abort", onShutdown);
  };
  return { context: { signal: controller.signal, presented: presentedByCall(call), peer: call.getPeer() }, dispose };
}

/**
 * The call's credentials: `authorization: Bearer <token>` metadata, and the
 * subject CN of a client certificate that the TLS handshake verified
 * (grpc-js gives no certificate for an unverified peer).
 */
export function presentedByCall(call: Pick<ServerUnaryCall<unknown, unknown>, "metadata" | "getAuthContext">): PresentedCredentials {
  return presentedCredentials(call.metadata.get("authorization")[0], call.getAuthContext?.().sslPeerCertificate?.subject?.CN);
}
